package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/monitor"
	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
)

// holdStore opens path as the daemon does (read-write, exclusive flock) and
// serves the daemon's API over it. flock is per open file description, so
// the CLI's own open in this same process conflicts as another process's
// would: TestReadFromDaemonAPI checks that the file path was refused.
func holdStore(t *testing.T, path string, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	s, err := store.Open(path, store.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	h := monitor.APIHandler(s, slog.New(slog.DiscardHandler), nil)
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// closedURL is an http URL nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

// The same commands print the same bytes from the file and, while a daemon
// holds the file, from the daemon's API; their errors say the same.
func TestReadFromDaemonAPI(t *testing.T) {
	path, scans := fillStore(t)
	_, nanos, _ := strings.Cut(scans[0].ID, "/")
	cases := [][]string{
		{"history", "--format", "json"},
		{"history"},
		{"history", "--target", "dmz", "--since", "1h"},
		{"history", "--target", "lab", "--format", "json"},
		{"history", "--target", "lab", "--since", "1m"},
		{"diff", "--target", "dmz"},
		{"diff", "--target", "dmz", "--format", "json"},
		{"diff", "--target", "dmz", "--format", "json", nanos, scans[2].ID},
		{"diff", "--target", "dmz", scans[2].ID, scans[3].ID},
		{"show", "--target", "dmz"},
		{"show", "--target", "dmz", "--format", "json"},
		{"show", "--target", "dmz", "--at", "48h", "--format", "json"},
		{"show", "--target", "lab"},
		// Errors: the same message either way.
		{"history", "--target", "nope"},
		{"diff", "--target", "lab"},
		{"diff", "--target", "dmz", "123"},
		{"diff", "--target", "lab", scans[0].ID},
		{"show", "--target", "dmz", "--at", "2000-01-01T00:00:00Z"},
		{"show", "--target", "nope"},
	}
	type result struct {
		code        int
		out, errMsg string
	}
	direct := make([]result, len(cases))
	for i, args := range cases {
		code, out, errs := runCLI(t, append([]string{args[0], "--storage.path", path}, args[1:]...)...)
		direct[i] = result{code, out, errs}
	}
	require.Equal(t, 0, direct[0].code, direct[0].errMsg)
	require.Len(t, strings.Split(strings.TrimSpace(direct[0].out), "\n"), 5)

	srv := holdStore(t, path, nil)
	for i, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errs := runCLI(t, append([]string{args[0], "--storage.path", path, "--web.url", srv.URL}, args[1:]...)...)
			lines := strings.Split(strings.TrimSpace(errs), "\n")
			require.Contains(t, lines[0], `msg="database is locked by the running daemon; reading from its API" path=`+path+" url="+srv.URL, "one line says where the data comes from")
			require.Equal(t, direct[i].code, code, errs)
			require.Equal(t, direct[i].out, out)
			if direct[i].code == 0 {
				require.Len(t, lines, 1, errs)
				require.NotEmpty(t, out)
			} else {
				require.Len(t, lines, 2, errs)
				require.Equal(t, strings.TrimSpace(direct[i].errMsg), lines[1])
			}
		})
	}
}

// history pages through every change, more than one page of the API holds.
func TestReadFromDaemonAPIPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exposure.db")
	s, err := store.Open(path, store.Options{NoSync: true})
	require.NoError(t, err)
	at := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	var changes []snapshot.Change
	for i := range monitor.MaxChangesLimit + 5 {
		changes = append(changes, snapshot.Change{Kind: snapshot.PortOpened, Target: "big", Address: "198.18.0.2",
			Port: uint16(i%65535 + 1), Protocol: "tcp", At: at.Add(time.Duration(i/3) * time.Millisecond), Snapshot: "big/1"})
	}
	require.NoError(t, s.Commit(t.Context(), store.Commit{Changes: changes}))
	require.NoError(t, s.Close())

	code, want, errs := runCLI(t, "history", "--storage.path", path, "--format", "json")
	require.Equal(t, 0, code, errs)
	var pages int
	srv := holdStore(t, path, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			pages++
			h.ServeHTTP(w, r)
		})
	})
	code, got, errs := runCLI(t, "history", "--storage.path", path, "--format", "json", "--web.url", srv.URL)
	require.Equal(t, 0, code, errs)
	require.Equal(t, 2, pages)
	require.Equal(t, monitor.MaxChangesLimit+5, strings.Count(got, "\n"))
	require.Equal(t, want, got)
}

func TestDaemonAPIFailsToo(t *testing.T) {
	path, _ := fillStore(t)
	passFile := filepath.Join(t.TempDir(), "pass")
	require.NoError(t, os.WriteFile(passFile, []byte("s3cret\n"), 0o600))
	srv := holdStore(t, path, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret" {
				w.Header().Set("WWW-Authenticate", "Basic")
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	locked := "is locked by another process (timeout 250ms); a running daemon holds it; and the daemon's API at "
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"nothing listens", []string{"--web.url", closedURL(t)}, []string{locked, "failed too: ", "connection refused"}},
		{"not an URL", []string{"--web.url", "127.0.0.1:9917"}, []string{`is not an http(s) URL`}},
		{"no credentials", []string{"--web.url", srv.URL}, []string{locked + srv.URL + " failed too: GET /api/v1/changes: 401 Unauthorized"}},
		{"wrong password", []string{"--web.url", "http://alice:wrong@" + strings.TrimPrefix(srv.URL, "http://")},
			[]string{locked + "http://alice:xxxxx@" + strings.TrimPrefix(srv.URL, "http://") + " failed too: GET /api/v1/changes: 401 Unauthorized (see --web.basic-auth-user"}},
		{"no password file", []string{"--web.url", srv.URL, "--web.basic-auth-user", "alice", "--web.basic-auth-password-file", passFile + ".none"},
			[]string{"reading the API password: ", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(t, append([]string{"history", "--storage.path", path}, tc.args...)...)
			require.Equal(t, 1, code, errs)
			require.Empty(t, out)
			for _, w := range tc.want {
				require.Contains(t, errs, w)
			}
			require.NotContains(t, errs, "wrong", "passwords are redacted")
		})
	}

	code, out, errs := runCLI(t, "history", "--storage.path", path, "--web.url", srv.URL,
		"--web.basic-auth-user", "alice", "--web.basic-auth-password-file", passFile, "--target", "lab")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "forbidden_open")
}

// startDaemon runs a real daemon on a random loopback port over the
// database at path (its one target never runs within a test) and returns
// the URL it serves; the daemon stops when the test ends.
func startDaemon(t *testing.T, path string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "exposure.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("targets:\n  - name: idle\n    hosts: [127.0.0.1]\n    ports: \"1\"\n    engine: connect\n    schedule: \"@every 24h\"\n"), 0o600))
	addrs := []string{"127.0.0.1:0"}
	socket, webCfg := false, ""
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- monitor.Run(ctx, monitor.Options{
			ConfigFile: cfg, StoragePath: path,
			Web:      &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &socket, WebConfigFile: &webCfg},
			Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler), Notify: func(string) error { return nil },
		})
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		_, err := os.Stat(monitor.APIFile(path))
		require.ErrorIs(t, err, os.ErrNotExist, "the daemon removes its API file on the way out")
	})
	// The daemon writes the file once it holds the database and listens.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if u, err := monitor.ReadAPIURL(path); err == nil {
			return u
		}
		select {
		case err := <-done:
			t.Fatalf("daemon exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon recorded no API URL within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// With the daemon on a port of its own, --storage.path alone finds its API
// through the URL it recorded beside the database; --web.url still wins.
func TestReadFromDaemonFoundByAPIFile(t *testing.T) {
	path, _ := fillStore(t)
	code, want, errs := runCLI(t, "history", "--storage.path", path, "--format", "json")
	require.Equal(t, 0, code, errs)

	u := startDaemon(t, path)
	require.NotEqual(t, defaultWebURL, u)
	code, got, errs := runCLI(t, "history", "--storage.path", path, "--format", "json")
	require.Equal(t, 0, code, errs)
	require.Equal(t, want, got)
	require.Contains(t, errs, `msg="database is locked by the running daemon; reading from its API" path=`+path+" url="+u+" recorded_in="+path+".api")

	code, _, errs = runCLI(t, "history", "--storage.path", path, "--web.url", closedURL(t))
	require.Equal(t, 1, code)
	require.Contains(t, errs, "connection refused", "an explicit --web.url wins over the file")

	// A file that makes no sense is an error that names it.
	require.NoError(t, os.WriteFile(monitor.APIFile(path), []byte("junk\n"), 0o644))
	code, _, errs = runCLI(t, "show", "--storage.path", path, "--target", "dmz")
	require.Equal(t, 1, code)
	require.Contains(t, errs, "a running daemon holds it; and the daemon's API file: "+path+`.api: not an http(s) URL: "junk"`)
	require.NoError(t, os.WriteFile(monitor.APIFile(path), []byte(u+"\n"), 0o644))
}
