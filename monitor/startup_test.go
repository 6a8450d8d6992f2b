package monitor

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/store"
)

// runOptions are the Options of a daemon with the embedded default
// configuration (no run at start) on addr and storage path db.
func runOptions(db, addr string) Options {
	addrs := []string{addr}
	socket, webCfg := false, ""
	return Options{
		StoragePath: db,
		Web:         &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &socket, WebConfigFile: &webCfg},
		Registry:    prometheus.NewRegistry(), Logger: discardLogger(), Notify: func(string) error { return nil },
	}
}

// A daemon that cannot bind its web port fails before it creates the
// database (or its directories); an existing database is left as it was.
func TestDaemonBindFailureLeavesNoDatabase(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	dir := t.TempDir()

	db := filepath.Join(dir, "new", "sub", "exposure.db")
	err = Run(context.Background(), runOptions(db, busy.Addr().String()))
	require.ErrorContains(t, err, "address already in use")
	_, statErr := os.Stat(filepath.Join(dir, "new"))
	require.ErrorIs(t, statErr, os.ErrNotExist, "no database, no directory left behind")

	// A failure after the database was created (here: the alert metrics
	// collide with one already registered) removes it again.
	o := runOptions(db, "127.0.0.1:0")
	o.Registry.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "exposure_outbox_pending", Help: "taken"}))
	require.ErrorContains(t, Run(context.Background(), o), "exposure_outbox_pending")
	_, statErr = os.Stat(filepath.Join(dir, "new"))
	require.ErrorIs(t, statErr, os.ErrNotExist, "no database, no directory left behind")

	existing := filepath.Join(dir, "old.db")
	s, err := store.Open(existing, store.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	before, err := os.ReadFile(existing)
	require.NoError(t, err)
	require.ErrorContains(t, Run(context.Background(), runOptions(existing, busy.Addr().String())), "address already in use")
	after, err := os.ReadFile(existing)
	require.NoError(t, err)
	require.Equal(t, before, after, "an existing database is not touched")
}

// The daemon records its API's URL beside the database while it holds it:
// written once ready, kept when a second daemon on the same file is refused,
// removed on the way out.
func TestDaemonRecordsAPIURL(t *testing.T) {
	td := startTestDaemon(t, testConfig)
	u, err := ReadAPIURL(td.db)
	require.NoError(t, err)
	require.Equal(t, td.url, u)
	code, _ := get(t, u+"/-/ready")
	require.Equal(t, 200, code)

	err = Run(context.Background(), runOptions(td.db, "127.0.0.1:0"))
	require.ErrorIs(t, err, store.ErrLocked)
	u, err = ReadAPIURL(td.db)
	require.NoError(t, err)
	require.Equal(t, td.url, u, "a daemon refused by the lock leaves the running one's file")

	td.stop(t)
	_, err = os.Stat(APIFile(td.db))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = os.Stat(td.db)
	require.NoError(t, err, "a daemon that started keeps its database")
}

type fakeListener struct {
	net.Listener
	addr net.Addr
}

func (f fakeListener) Addr() net.Addr { return f.addr }

func TestAPIURL(t *testing.T) {
	tcp := func(ip string, port int) net.Listener {
		return fakeListener{addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: port}}
	}
	unix := fakeListener{addr: &net.UnixAddr{Name: "/run/exposure.sock", Net: "unix"}}
	for _, tt := range []struct {
		ls   []net.Listener
		want string
	}{
		{[]net.Listener{tcp("127.0.0.1", 9917)}, "http://127.0.0.1:9917"},
		{[]net.Listener{tcp("0.0.0.0", 9917)}, "http://127.0.0.1:9917"},
		{[]net.Listener{tcp("::", 9917)}, "http://[::1]:9917"},
		{[]net.Listener{tcp("2001:2::5", 80)}, "http://[2001:2::5]:80"},
		{[]net.Listener{unix, tcp("198.18.0.1", 9917)}, "http://198.18.0.1:9917"},
		{[]net.Listener{unix}, ""},
	} {
		require.Equal(t, tt.want, apiURL(tt.ls, "http"))
	}
}

func TestWebScheme(t *testing.T) {
	dir := t.TempDir()
	for name, tt := range map[string]struct{ file, want string }{
		"none":       {"", "http"},
		"basic auth": {"basic_auth_users:\n  dave: x\n", "http"},
		"tls":        {"tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n", "https"},
	} {
		path := ""
		if tt.file != "" {
			path = filepath.Join(dir, name+".yml")
			require.NoError(t, os.WriteFile(path, []byte(tt.file), 0o600))
		}
		got, err := webScheme(path)
		require.NoError(t, err, name)
		require.Equal(t, tt.want, got, name)
	}
}

func TestReadAPIURLRejectsJunk(t *testing.T) {
	db := filepath.Join(t.TempDir(), "x.db")
	_, err := ReadAPIURL(db)
	require.ErrorIs(t, err, os.ErrNotExist)
	for _, junk := range []string{"127.0.0.1:9917\n", "ftp://h/\n", "http://a b\n", "http://h\nhttp://i\n"} {
		require.NoError(t, os.WriteFile(APIFile(db), []byte(junk), 0o600))
		_, err := ReadAPIURL(db)
		require.ErrorContains(t, err, "x.db.api: not an http(s) URL", junk)
	}
	require.NoError(t, writeAPIURL(db, "http://127.0.0.1:1234"))
	u, err := ReadAPIURL(db)
	require.NoError(t, err)
	require.Equal(t, "http://127.0.0.1:1234", u)
}
