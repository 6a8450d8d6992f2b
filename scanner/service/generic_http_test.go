package service

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDetectGoNetHTTP runs a real Go net/http server over loopback: it is
// named by its own headers, whatever its page says, and never as a
// servlet container (issue 13: Tomcat was reported as a Go server; the
// reverse must not happen either). The Tomcat side is in
// testdata/replies.txt, captured from the Debian tomcat10 package.
func TestDetectGoNetHTTP(t *testing.T) {
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity, Timeout: 3 * time.Second})
	tests := []struct {
		name    string
		handler http.Handler
		info    string
	}{
		{"not found", http.NotFoundHandler(), ""},
		{"page titled like Tomcat's", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "<html><head><title>Apache Tomcat</title></head><body>It works !</body></html>\n")
		}), "Apache Tomcat"},
		{"handler headers", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Last-Modified", "Wed, 25 Nov 2026 08:00:00 GMT")
			w.Header().Set("Accept-Ranges", "bytes")
			w.WriteHeader(http.StatusTeapot)
		}), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := listen(t)
			srv := &http.Server{Handler: tt.handler, ReadHeaderTimeout: 5 * time.Second}
			go func() { _ = srv.Serve(l) }()
			t.Cleanup(func() { _ = srv.Close() })
			port := uint16(l.Addr().(*net.TCPAddr).Port)
			got, err := d.Detect(context.Background(), loopback, port)
			require.NoError(t, err)
			require.Equal(t, "http", got.Name)
			require.Equal(t, "Golang net/http server", got.Product)
			require.Equal(t, tt.info, got.Info)
		})
	}
}
