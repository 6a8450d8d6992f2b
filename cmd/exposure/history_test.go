package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/diff"
	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
)

// fillStore commits four scans of "dmz" (the last incomplete) and one of
// "lab", with the changes package diff finds, the last ones within the
// last hour and the first ones three days ago.
func fillStore(t *testing.T) (path string, scans []*snapshot.Snapshot) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "exposure.db")
	s, err := store.Open(path, store.Options{})
	require.NoError(t, err)
	defer s.Close()

	now := time.Now().UTC().Truncate(time.Second)
	mk := func(target string, at time.Time, complete bool, ports ...snapshot.Port) *snapshot.Snapshot {
		sn := &snapshot.Snapshot{Target: target, ID: snapshot.NewID(target, at), StartedAt: at, FinishedAt: at.Add(2 * time.Second),
			Complete: complete, Quality: snapshot.Quality{ProbesSent: 1000, Replies: 1000},
			Hosts: []snapshot.Host{{Address: "198.18.0.2", Hostname: "mail.example.test", State: snapshot.HostUp, Ports: ports}}}
		return sn
	}
	ssh := func(v string) snapshot.Port {
		return snapshot.Port{Port: 22, Protocol: "tcp", State: snapshot.StateOpen,
			Service: &snapshot.Service{Name: "ssh", Product: "OpenSSH", Version: v}}
	}
	port := func(n uint16) snapshot.Port {
		return snapshot.Port{Port: n, Protocol: "tcp", State: snapshot.StateOpen}
	}
	scans = []*snapshot.Snapshot{
		mk("dmz", now.Add(-72*time.Hour), true, ssh("9.2p1"), port(80), port(23)),
		mk("dmz", now.Add(-71*time.Hour), true, ssh("9.2p1"), port(80), port(23)),
		mk("dmz", now.Add(-30*time.Minute), true, ssh("9.6p1"), port(4444), port(23)),
		mk("dmz", now.Add(-10*time.Minute), false, ssh("9.6p1")),
	}
	commitScans(t, s, diff.Policy{NeverOpen: []spec.ProtoPort{spec.TCP(23)}}, scans...)
	lab := mk("lab", now.Add(-5*time.Minute), true, port(9917))
	require.NoError(t, s.Commit(t.Context(), store.Commit{Snapshot: lab, Changes: []snapshot.Change{
		{Kind: snapshot.ForbiddenOpen, Address: "198.18.0.2", Port: 9917, Protocol: "tcp", Detail: "evil\x1b[31m banner\n"},
	}}))
	return path, scans
}

// commitScans diffs and commits scans in order as the daemon does, the
// diff state going through the store's encoding between scans.
func commitScans(t *testing.T, s *store.Store, policy diff.Policy, scans ...*snapshot.Snapshot) {
	t.Helper()
	var raw []byte
	var prev *snapshot.Snapshot
	for _, sn := range scans {
		st, err := diff.UnmarshalState(raw)
		require.NoError(t, err)
		res := diff.Diff(prev, sn, st, policy)
		confirmed, err := diff.Confirm(t.Context(), nil, res.Pending, 0, 0)
		require.NoError(t, err)
		raw, err = res.State.MarshalBinary()
		require.NoError(t, err)
		require.NoError(t, s.Commit(t.Context(), store.Commit{Snapshot: sn, Changes: append(res.Changes, confirmed...), DiffState: raw}))
		if sn.Complete {
			prev = sn
		}
	}
}

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHistory(t *testing.T) {
	path, scans := fillStore(t)

	code, out, errs := runCLI(t, "history", "--storage.path", path, "--format", "json")
	require.Equal(t, 0, code, errs)
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		for _, k := range []string{"kind", "target", "address", "at", "snapshot"} {
			require.Contains(t, m, k, line)
		}
		kinds = append(kinds, m["target"].(string)+":"+m["kind"].(string))
	}
	require.Equal(t, []string{
		"dmz:forbidden_open", // the baseline's verdict
		"dmz:version_changed", "dmz:port_closed", "dmz:port_opened",
		"lab:forbidden_open",
	}, kinds)

	code, out, errs = runCLI(t, "history", "--storage.path", path, "--target", "dmz", "--since", "1h")
	require.Equal(t, 0, code, errs)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	require.Regexp(t, `^\S+Z  dmz  version_changed  198\.18\.0\.2:22/tcp +open \(ssh OpenSSH 9\.2p1\) -> open \(ssh OpenSSH 9\.6p1\)$`, lines[0])
	require.Regexp(t, `port_closed +198\.18\.0\.2:80/tcp$`, lines[1])
	require.Regexp(t, `port_opened +198\.18\.0\.2:4444/tcp +open$`, lines[2])
	require.NotContains(t, out, scans[0].StartedAt.Format(time.RFC3339))

	code, out, errs = runCLI(t, "history", "--storage.path", path, "--target", "lab")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "evil [31m banner", "control characters from banners are neutralised")
	require.NotContains(t, out, "\x1b")

	code, out, errs = runCLI(t, "history", "--storage.path", path, "--target", "lab", "--since", "1m")
	require.Equal(t, 0, code, errs)
	require.Equal(t, "no changes\n", out)

	code, out, errs = runCLI(t, "history", "--storage.path", path, "--target", "nope")
	require.Equal(t, 1, code)
	require.Empty(t, out)
	require.Contains(t, errs, `unknown target "nope": no scans or changes stored`, "a misspelt target is not silently empty")
}

// TestHistoryClosure checks that a closure says what was there and that
// its before is the service its opening's after showed, field for field.
func TestHistoryClosure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exposure.db")
	s, err := store.Open(path, store.Options{})
	require.NoError(t, err)
	now := time.Now().UTC().Truncate(time.Second)
	mk := func(i int, ports ...snapshot.Port) *snapshot.Snapshot {
		at := now.Add(time.Duration(i-3) * time.Minute)
		return &snapshot.Snapshot{Target: "lo", ID: snapshot.NewID("lo", at), StartedAt: at, FinishedAt: at.Add(time.Second), Complete: true,
			Hosts: []snapshot.Host{{Address: "127.0.0.1", State: snapshot.HostUp, Ports: ports}}}
	}
	ssh := snapshot.Port{Port: 22, Protocol: "tcp", State: snapshot.StateOpen}
	// As a test or an importer may build it: no CPE slice at all.
	web := snapshot.Port{Port: 19945, Protocol: "tcp", State: snapshot.StateOpen,
		Service: &snapshot.Service{Name: "http", Product: "nginx", Version: "1.22.1", Info: "Debian"}}
	commitScans(t, s, diff.Policy{}, mk(0, ssh), mk(1, ssh, web), mk(2, ssh))
	require.NoError(t, s.Close())

	code, out, errs := runCLI(t, "history", "--storage.path", path)
	require.Equal(t, 0, code, errs)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	require.Regexp(t, `port_opened +127\.0\.0\.1:19945/tcp +open \(http nginx 1\.22\.1 \(Debian\)\)$`, lines[0])
	require.Regexp(t, `port_closed +127\.0\.0\.1:19945/tcp +\(was http nginx 1\.22\.1 \(Debian\)\)$`, lines[1])

	code, out, errs = runCLI(t, "history", "--storage.path", path, "--format", "json")
	require.Equal(t, 0, code, errs)
	var changes []struct {
		Kind   string
		Before struct{ Service json.RawMessage }
		After  struct{ Service json.RawMessage }
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var c struct {
			Kind   string
			Before struct{ Service json.RawMessage }
			After  struct{ Service json.RawMessage }
		}
		require.NoError(t, json.Unmarshal([]byte(line), &c), line)
		changes = append(changes, c)
	}
	require.Len(t, changes, 2, out)
	opened, closed := changes[0].After.Service, changes[1].Before.Service
	require.JSONEq(t, `{"name":"http","product":"nginx","version":"1.22.1","info":"Debian","tunnel":"","cpe":[]}`, string(opened))
	require.JSONEq(t, string(opened), string(closed), "the closure's before is the opening's after")
}

func TestHistoryErrors(t *testing.T) {
	path, _ := fillStore(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"history", "--storage.path", path, "--since", "yesterday"}, 2, `--since "yesterday"`},
		{[]string{"history", "--storage.path", path, "--format", "xml"}, 2, "xml"},
		{[]string{"history", "--storage.path", filepath.Join(t.TempDir(), "none.db")}, 1, "no such file"},
		{[]string{"diff", "--storage.path", path}, 2, "--target"},
		{[]string{"diff", "--storage.path", path, "--target", "lab"}, 1, `target "lab" has 1 complete scan; a diff needs two`},
		{[]string{"diff", "--storage.path", path, "--target", "dmz", "123"}, 1, `no snapshot with id "dmz/123": store: not found`},
		{[]string{"show", "--storage.path", path, "--target", "dmz", "--at", "soon"}, 2, `--at "soon"`},
		{[]string{"show", "--storage.path", path, "--target", "dmz", "--at", "2000-01-01T00:00:00Z"}, 1, `target "dmz" has no complete scan at or before 2000-01-01T00:00:00Z: store: not found`},
		{[]string{"show", "--storage.path", path, "--target", "nope"}, 1, `unknown target "nope"`},
	} {
		code, out, errs := runCLI(t, tc.args...)
		require.Equal(t, tc.code, code, "%v: %s", tc.args, errs)
		require.Contains(t, errs, tc.want, tc.args)
		require.Empty(t, out, tc.args)
	}
}

func TestDiffCommand(t *testing.T) {
	path, scans := fillStore(t)

	// Default: the last two complete scans (the incomplete one is skipped).
	code, out, errs := runCLI(t, "diff", "--storage.path", path, "--target", "dmz")
	require.Equal(t, 0, code, errs)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Equal(t, scans[1].ID+" ("+scans[1].StartedAt.Format(time.RFC3339)+") -> "+scans[2].ID+" ("+scans[2].StartedAt.Format(time.RFC3339)+"): 3 changes", lines[0])
	require.Len(t, lines, 4)
	require.Contains(t, lines[1], "version_changed")
	require.Contains(t, lines[2], "port_closed")
	require.Contains(t, lines[3], "port_opened")

	// Explicit ids, short form, json.
	_, nanos, _ := strings.Cut(scans[0].ID, "/")
	code, out, errs = runCLI(t, "diff", "--storage.path", path, "--target", "dmz", "--format", "json", nanos, scans[1].ID)
	require.Equal(t, 0, code, errs)
	require.Empty(t, out, "two identical scans")

	// To the incomplete scan: no closures claimed.
	code, out, errs = runCLI(t, "diff", "--storage.path", path, "--target", "dmz", scans[2].ID, scans[3].ID)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, ": 0 changes")
	require.Contains(t, out, "incomplete")

	// From the incomplete scan: its ports are the view, the others opened.
	code, out, errs = runCLI(t, "diff", "--storage.path", path, "--target", "dmz", scans[3].ID, scans[2].ID)
	require.Equal(t, 0, code, errs)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	require.Contains(t, lines[0], ": 2 changes")
	require.Regexp(t, `port_opened +198\.18\.0\.2:23/tcp`, lines[1])
	require.Regexp(t, `port_opened +198\.18\.0\.2:4444/tcp`, lines[2])

	code, _, errs = runCLI(t, "diff", "--storage.path", path, "--target", "lab", scans[0].ID)
	require.Equal(t, 2, code)
	require.Contains(t, errs, "belongs to target dmz")
}

func TestShowCommand(t *testing.T) {
	path, scans := fillStore(t)
	code, out, errs := runCLI(t, "show", "--storage.path", path, "--target", "dmz")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "as of scan "+scans[2].ID)
	require.Contains(t, out, "Exposure scan report for mail.example.test (198.18.0.2)")
	require.Regexp(t, `4444/tcp +open`, out)
	require.NotContains(t, out, "80/tcp")

	code, out, errs = runCLI(t, "show", "--storage.path", path, "--target", "dmz", "--at", "48h", "--format", "json")
	require.Equal(t, 0, code, errs)
	var sn snapshot.Snapshot
	require.NoError(t, json.Unmarshal([]byte(out), &sn))
	require.Equal(t, scans[1].ID, sn.ID)
	require.Equal(t, 3, sn.OpenPorts())
}

func TestMissingDatabaseNamedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.db")
	code, _, errs := runCLI(t, "history", "--storage.path", path)
	require.Equal(t, 1, code)
	require.Equal(t, "exposure history: store: open "+path+": no such file or directory\n", errs)
}
