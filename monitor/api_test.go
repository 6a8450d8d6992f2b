package monitor

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
)

// apiFixture stores three scans of "dmz" (the last incomplete) and one of
// "lab", each with changes, and serves the API over them. now is one hour
// after the last scan.
type apiFixture struct {
	store *store.Store
	srv   *httptest.Server
	scans []*snapshot.Snapshot
	now   time.Time
}

func newAPIFixture(t *testing.T) *apiFixture {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "exposure.db"), store.Options{NoSync: true})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })

	base := time.Date(2026, 11, 20, 6, 0, 0, 0, time.UTC)
	mk := func(target string, at time.Time, complete bool, ports ...uint16) *snapshot.Snapshot {
		h := snapshot.Host{Address: "198.18.0.2", State: snapshot.HostUp, Ports: []snapshot.Port{}}
		for _, p := range ports {
			h.Ports = append(h.Ports, snapshot.Port{Port: p, Protocol: "tcp", State: snapshot.StateOpen,
				Service: &snapshot.Service{Name: "ssh", Product: "OpenSSH", Version: "9.6p1"}})
		}
		return &snapshot.Snapshot{Target: target, ID: snapshot.NewID(target, at), StartedAt: at, FinishedAt: at.Add(time.Second),
			Complete: complete, Quality: snapshot.Quality{ProbesSent: 100, Replies: 100}, Hosts: []snapshot.Host{h}}
	}
	change := func(kind snapshot.Kind, port uint16) snapshot.Change {
		return snapshot.Change{Kind: kind, Address: "198.18.0.2", Port: port, Protocol: "tcp",
			After: &snapshot.Port{Port: port, Protocol: "tcp", State: snapshot.StateOpen}}
	}
	f := &apiFixture{store: s, now: base.Add(49 * time.Hour)}
	commits := []struct {
		sn      *snapshot.Snapshot
		changes []snapshot.Change
	}{
		{mk("dmz", base, true, 22, 23), []snapshot.Change{change(snapshot.ForbiddenOpen, 23)}},
		// Five changes at one moment: pages must split inside them.
		{mk("dmz", base.Add(24*time.Hour), true, 22, 80, 81, 82, 83, 84), []snapshot.Change{
			change(snapshot.PortOpened, 80), change(snapshot.PortOpened, 81), change(snapshot.PortOpened, 82),
			change(snapshot.PortOpened, 83), change(snapshot.PortOpened, 84), change(snapshot.PortClosed, 23)}},
		{mk("dmz", base.Add(48*time.Hour), false, 22), nil},
		{mk("lab", base.Add(47*time.Hour), true, 9917), []snapshot.Change{change(snapshot.UnexpectedOpen, 9917)}},
	}
	for _, c := range commits {
		require.NoError(t, s.Commit(t.Context(), store.Commit{Snapshot: c.sn, Changes: c.changes}))
		f.scans = append(f.scans, c.sn)
	}
	f.srv = httptest.NewServer(APIHandler(s, slog.New(slog.DiscardHandler), func() time.Time { return f.now }))
	t.Cleanup(f.srv.Close)
	return f
}

// get returns the status, body and Link header of GET path.
func (f *apiFixture) get(t *testing.T, path string) (int, string, string) {
	t.Helper()
	resp, err := f.srv.Client().Get(f.srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(path, "/api/v1/changes") {
		require.Equal(t, "application/x-ndjson", resp.Header.Get("Content-Type"))
	} else {
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, string(body), resp.Header.Get("Link")
}

func decodeNDJSON(t *testing.T, body string) []snapshot.Change {
	t.Helper()
	out := []snapshot.Change{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var c snapshot.Change
		require.NoError(t, json.Unmarshal(sc.Bytes(), &c), sc.Text())
		out = append(out, c)
	}
	return out
}

func changeKeys(changes []snapshot.Change) []string {
	var out []string
	for _, c := range changes {
		out = append(out, c.Target+":"+string(c.Kind)+":"+strconv.Itoa(int(c.Port)))
	}
	return out
}

func TestAPIChanges(t *testing.T) {
	f := newAPIFixture(t)
	all, err := f.store.Changes("", time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Len(t, all, 8)
	day2 := f.scans[1].StartedAt

	for _, tc := range []struct {
		name, query string
		want        []snapshot.Change
	}{
		{"all", "", all},
		{"target", "?target=lab", all[7:]},
		{"target dmz", "?target=dmz", all[:7]},
		{"since duration", "?since=2h", all[7:]},
		{"since time", "?since=" + url.QueryEscape(day2.Format(time.RFC3339)), all[1:]},
		{"until exclusive", "?until=" + url.QueryEscape(day2.Format(time.RFC3339)), all[:1]},
		{"window and target", "?target=dmz&since=30h&until=1h", all[1:7]},
		{"known target, no changes in window", "?target=lab&until=" + url.QueryEscape(day2.Format(time.RFC3339)), []snapshot.Change{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, link := f.get(t, "/api/v1/changes"+tc.query)
			require.Equal(t, http.StatusOK, code, body)
			require.Empty(t, link)
			got := decodeNDJSON(t, body)
			require.Equal(t, len(tc.want), len(got), body)
			for i := range got {
				require.True(t, got[i].At.Equal(tc.want[i].At))
				got[i].At = tc.want[i].At
			}
			require.Equal(t, tc.want, got)
			if tc.query == "" {
				// The lines are exactly what `history --format json` writes.
				var want strings.Builder
				enc := json.NewEncoder(&want)
				for _, c := range all {
					require.NoError(t, enc.Encode(c))
				}
				require.Equal(t, want.String(), body)
			}
		})
	}
}

func TestAPIChangesPages(t *testing.T) {
	f := newAPIFixture(t)
	all, err := f.store.Changes("", time.Time{}, time.Time{})
	require.NoError(t, err)
	linkRE := regexp.MustCompile(`^<(/api/v1/changes\?[^>]+)>; rel="next"$`)
	for _, limit := range []int{1, 2, 3, 5, 7} {
		t.Run(strconv.Itoa(limit), func(t *testing.T) {
			var got []snapshot.Change
			path := "/api/v1/changes?limit=" + strconv.Itoa(limit)
			for pages := 0; path != ""; pages++ {
				require.Less(t, pages, 20, "pagination does not end")
				code, body, link := f.get(t, path)
				require.Equal(t, http.StatusOK, code, body)
				page := decodeNDJSON(t, body)
				require.LessOrEqual(t, len(page), limit)
				got = append(got, page...)
				path = ""
				if link != "" {
					m := linkRE.FindStringSubmatch(link)
					require.NotNil(t, m, link)
					path = m[1]
					require.Contains(t, path, "until=", "later pages keep the window of the first")
				}
			}
			require.Equal(t, changeKeys(all), changeKeys(got))
		})
	}
}

func TestAPISnapshot(t *testing.T) {
	f := newAPIFixture(t)
	day2 := f.scans[1].StartedAt
	for _, tc := range []struct {
		name, query string
		want        *snapshot.Snapshot
	}{
		{"latest complete", "?target=dmz", f.scans[1]},
		{"at time", "?target=dmz&at=" + url.QueryEscape(day2.Add(-time.Minute).Format(time.RFC3339)), f.scans[0]},
		{"at exact start", "?target=dmz&at=" + url.QueryEscape(day2.Format(time.RFC3339Nano)), f.scans[1]},
		{"at duration ago", "?target=dmz&at=48h", f.scans[0]},
		{"by id", "?id=" + url.QueryEscape(f.scans[2].ID), f.scans[2]},
		{"other target", "?target=lab", f.scans[3]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := f.get(t, "/api/v1/snapshot"+tc.query)
			require.Equal(t, http.StatusOK, code, body)
			var got snapshot.Snapshot
			require.NoError(t, json.Unmarshal([]byte(body), &got))
			require.Equal(t, tc.want.ID, got.ID)
			require.Equal(t, tc.want.Complete, got.Complete)
			require.Equal(t, tc.want.OpenPorts(), got.OpenPorts())
			stored, err := f.store.Snapshot(tc.want.ID)
			require.NoError(t, err)
			want, err := json.Marshal(stored)
			require.NoError(t, err)
			require.JSONEq(t, string(want), body)
		})
	}
}

// TestAPISnapshotPages stores a scan of 25 hosts, then pages it 10 hosts
// at a time by following the Link headers, while a newer scan commits
// between the pages: the pages are exactly the first scan's hosts, with
// its totals.
func TestAPISnapshotPages(t *testing.T) {
	f := newAPIFixture(t)
	at := f.scans[1].StartedAt.Add(time.Hour)
	mk := func(at time.Time, hosts int) *snapshot.Snapshot {
		sn := &snapshot.Snapshot{Target: "big", ID: snapshot.NewID("big", at), StartedAt: at, FinishedAt: at, Complete: true}
		for i := range hosts {
			sn.Hosts = append(sn.Hosts, snapshot.Host{Address: "198.18.1." + strconv.Itoa(i+1), State: snapshot.HostUp,
				Ports: []snapshot.Port{{Port: 22, Protocol: "tcp", State: snapshot.StateOpen}, {Port: 80, Protocol: "tcp", State: snapshot.StateOpen}}})
		}
		return sn
	}
	first := mk(at, 25)
	require.NoError(t, f.store.Commit(t.Context(), store.Commit{Snapshot: first}))

	var addrs []string
	path, pages := "/api/v1/snapshot?target=big&limit=10", 0
	for path != "" {
		resp, err := f.srv.Client().Get(f.srv.URL + path)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		require.Equal(t, "25", resp.Header.Get("X-Total-Hosts"))
		require.Equal(t, "50", resp.Header.Get("X-Total-Open-Ports"))
		var got snapshot.Snapshot
		require.NoError(t, json.Unmarshal(body, &got))
		require.Equal(t, first.ID, got.ID)
		for _, h := range got.Hosts {
			addrs = append(addrs, h.Address)
		}
		pages++
		if pages == 1 {
			require.NoError(t, f.store.Commit(t.Context(), store.Commit{Snapshot: mk(at.Add(time.Minute), 3)}))
		}
		path = ""
		if m := regexp.MustCompile(`^<([^>]+)>; rel="next"$`).FindStringSubmatch(resp.Header.Get("Link")); m != nil {
			path = m[1]
		}
	}
	require.Equal(t, 3, pages)
	var want []string
	for _, h := range first.Hosts {
		want = append(want, h.Address)
	}
	require.Equal(t, want, addrs)
}

func TestAPISnapshots(t *testing.T) {
	f := newAPIFixture(t)
	code, body, _ := f.get(t, "/api/v1/snapshots?target=dmz")
	require.Equal(t, http.StatusOK, code, body)
	var got []ScanInfo
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.Len(t, got, 3)
	for i, want := range []*snapshot.Snapshot{f.scans[2], f.scans[1], f.scans[0]} { // newest first
		require.Equal(t, want.ID, got[i].ID)
		require.Equal(t, want.Complete, got[i].Complete)
		require.True(t, want.StartedAt.Equal(got[i].StartedAt))
		require.Equal(t, want.OpenPorts(), got[i].OpenPorts)
	}
	require.Contains(t, body, `"started_at":`)

	code, body, _ = f.get(t, "/api/v1/snapshots?target=dmz&limit=1")
	require.Equal(t, http.StatusOK, code, body)
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.Len(t, got, 1)
	require.Equal(t, f.scans[2].ID, got[0].ID)
}

func TestAPIErrors(t *testing.T) {
	f := newAPIFixture(t)
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/api/v1/changes?since=yesterday", 400, `parameter since="yesterday": want an RFC 3339 time or a duration ago`},
		{"/api/v1/changes?until=-5m", 400, `parameter until="-5m"`},
		{"/api/v1/changes?since=1h&until=2h", 400, `parameter until="2h": not after since`},
		{"/api/v1/changes?limit=0", 400, `parameter limit="0": out of range 1..10000`},
		{"/api/v1/changes?limit=10001", 400, `parameter limit="10001": out of range 1..10000`},
		{"/api/v1/changes?limit=ten", 400, `parameter limit="ten": not an integer`},
		{"/api/v1/changes?offset=-1", 400, `parameter offset="-1"`},
		{"/api/v1/changes?targte=dmz", 400, `parameter targte="dmz": unknown parameter`},
		{"/api/v1/changes?target=dmz&target=lab", 400, `parameter target="dmz,lab": given more than once`},
		{"/api/v1/changes?target=", 400, `parameter target="": empty`},
		{"/api/v1/changes?target=a%1Bb", 400, `parameter target="a\x1bb": contains control characters`},
		{"/api/v1/snapshot", 400, `parameter target="": required`},
		{"/api/v1/snapshot?target=dmz&at=soon", 400, `parameter at="soon"`},
		{"/api/v1/snapshot?id=dmz/1&target=dmz", 400, `parameter id="dmz/1": give either id or target`},
		{"/api/v1/snapshot?target=dmz&limit=0", 400, `parameter limit="0": out of range 1..10000`},
		{"/api/v1/snapshot?target=dmz&offset=2", 400, `parameter offset="2": needs limit`},
		{"/api/v1/snapshots", 400, `parameter target="": required`},
		{"/api/v1/snapshots?target=dmz&limit=100000", 400, `parameter limit="100000": out of range 1..10000`},

		{"/api/v1/changes?target=nope", 404, `unknown target "nope": no scans or changes stored`},
		{"/api/v1/snapshot?target=nope", 404, `unknown target "nope"`},
		{"/api/v1/snapshots?target=nope", 404, `unknown target "nope"`},
		{"/api/v1/snapshot?id=dmz/123", 404, `no snapshot with id "dmz/123"`},
		{"/api/v1/snapshot?target=dmz&at=2000-01-01T00:00:00Z", 404, `target "dmz" has no complete scan at or before 2000-01-01T00:00:00Z`},
		{"/api/v1/nothing", 404, "no API endpoint /api/v1/nothing"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, body, _ := f.get(t, tc.path)
			require.Equal(t, tc.code, code, body)
			var e APIError
			require.NoError(t, json.Unmarshal([]byte(body), &e), body)
			require.Contains(t, e.Error, tc.want)
		})
	}

	resp, err := f.srv.Client().Post(f.srv.URL+"/api/v1/changes", "application/json", nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "read-only")
	require.Contains(t, string(body), "read-only")
}

// The daemon serves the API on its own mux, behind the same exporter-toolkit
// server (and so the same TLS and basic auth) as /metrics.
func TestRoutesServeAPI(t *testing.T) {
	f := newAPIFixture(t)
	d := &daemonState{opts: Options{Registry: prometheus.NewRegistry(), Now: func() time.Time { return f.now }},
		store: f.store, logger: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(d.routes())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/api/v1/snapshot?target=dmz&at=48h")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var got snapshot.Snapshot
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	require.Equal(t, f.scans[0].ID, got.ID, "at=48h is read with the daemon's clock")
}
