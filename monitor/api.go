package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/common/model"

	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
)

// API limits: a request names at most this many results with limit=.
const (
	DefaultChangesLimit   = 1000
	MaxChangesLimit       = 10000
	DefaultSnapshotsLimit = 100
	MaxSnapshotsLimit     = 10000
	// MaxSnapshotHostsLimit bounds a page of a snapshot's hosts
	// (GET /api/v1/snapshot?limit=).
	MaxSnapshotHostsLimit = 10000
)

// ScanInfo is one entry of GET /api/v1/snapshots: a stored scan without its
// hosts.
type ScanInfo struct {
	ID         string           `json:"id"`
	Target     string           `json:"target"`
	StartedAt  time.Time        `json:"started_at"`
	FinishedAt time.Time        `json:"finished_at"`
	Complete   bool             `json:"complete"`
	Quality    snapshot.Quality `json:"quality"`
	HostsUp    int              `json:"hosts_up"`
	OpenPorts  int              `json:"open_ports"`
}

// APIError is the body of every API answer that is not 200.
type APIError struct {
	Error string `json:"error"`
}

// apiStore is what the API reads; *store.Store provides it with read
// transactions, which run alongside the daemon's writes.
type apiStore interface {
	latestStore
	Targets() ([]string, error)
	ChangesLimit(target string, from, to time.Time, limit int) ([]snapshot.Change, error)
	At(target string, t time.Time) (*snapshot.Snapshot, error)
	Snapshot(id string) (*snapshot.Snapshot, error)
	Scans(target string, limit int) ([]store.ScanInfo, error)
}

var _ apiStore = (*store.Store)(nil)

// APIHandler serves the read-only JSON API under /api/v1/ from s:
//
//	GET /api/v1/changes?target=&since=&until=&limit=&offset=
//	    changes with since <= at < until, oldest first, as NDJSON (one
//	    change per line, the lines of `exposure history --format json`);
//	    since and until are RFC 3339 times or durations ago (24h, 7d);
//	    when more remain, a Link header with rel="next" names the next page
//	    (with until pinned, so pages do not shift as scans commit)
//	GET /api/v1/snapshot?target=NAME[&at=TIME][&limit=N[&offset=M]]
//	    the latest complete scan of NAME, or the one as it was at TIME;
//	    with limit, a page of its hosts (offset..offset+limit) with the
//	    totals in X-Total-Hosts and X-Total-Open-Ports and, when more
//	    remain, a Link rel="next" to the next page of the same scan (by id)
//	GET /api/v1/snapshot?id=ID[&limit=N[&offset=M]]
//	    one scan by id, paged the same way
//	GET /api/v1/snapshots?target=NAME[&limit=N]
//	    the scans of NAME, newest first, without hosts
//
// Bad parameters answer 400, unknown targets and ids 404, both with a JSON
// body {"error": "..."}. now is the clock durations are taken back from.
func APIHandler(s *store.Store, logger *slog.Logger, now func() time.Time) http.Handler {
	return newAPI(s, nil, logger, now)
}

// newAPI is APIHandler reading the latest snapshots from latest, the
// daemon's collector, where it holds them (nil: always from s).
func newAPI(s apiStore, latest *portCollector, logger *slog.Logger, now func() time.Time) http.Handler {
	if now == nil {
		now = time.Now
	}
	a := &api{store: s, latest: latest, logger: logger, now: now}
	mux := http.NewServeMux()
	for path, h := range map[string]http.HandlerFunc{
		"/api/v1/changes":   a.changes,
		"/api/v1/snapshot":  a.snapshot,
		"/api/v1/snapshots": a.snapshots,
	} {
		mux.HandleFunc("GET "+path, h)
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", "GET, HEAD")
			writeAPIError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed: the API is read-only", r.Method))
		})
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, http.StatusNotFound, fmt.Sprintf("no API endpoint %s", r.URL.Path))
	})
	return mux
}

type api struct {
	store  apiStore
	latest *portCollector
	logger *slog.Logger
	now    func() time.Time
}

// badParam is a 400 that names the parameter and its value.
type badParam struct{ name, value, reason string }

func (e *badParam) Error() string {
	return fmt.Sprintf("parameter %s=%q: %s", e.name, e.value, e.reason)
}

// query checks that only allowed parameters appear, each at most once.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q := r.URL.Query()
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			return nil, &badParam{k, strings.Join(vs, ","), "unknown parameter (want " + strings.Join(allowed, ", ") + ")"}
		}
		if len(vs) > 1 {
			return nil, &badParam{k, strings.Join(vs, ","), "given more than once"}
		}
	}
	return q, nil
}

func targetParam(q url.Values, required bool) (string, error) {
	v, ok := q["target"]
	if !ok {
		if required {
			return "", &badParam{"target", "", "required"}
		}
		return "", nil
	}
	t := v[0]
	switch {
	case t == "":
		return "", &badParam{"target", t, "empty"}
	case len(t) > 256:
		return "", &badParam{"target", t[:256], "longer than 256 bytes"}
	case strings.ContainsFunc(t, unicode.IsControl):
		return "", &badParam{"target", t, "contains control characters"}
	}
	return t, nil
}

// timeParam parses an RFC 3339 time or a positive duration ago.
func timeParam(q url.Values, name string, now time.Time) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		if q.Has(name) {
			return time.Time{}, &badParam{name, v, "empty"}
		}
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := model.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-time.Duration(d)), nil
	}
	return time.Time{}, &badParam{name, v, "want an RFC 3339 time or a duration ago such as 24h or 7d"}
}

func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	if !q.Has(name) {
		return def, nil
	}
	v := q.Get(name)
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, &badParam{name, v, "not an integer"}
	}
	if n < lo || n > hi {
		return 0, &badParam{name, v, fmt.Sprintf("out of range %d..%d", lo, hi)}
	}
	return n, nil
}

func (a *api) changes(w http.ResponseWriter, r *http.Request) {
	now := a.now()
	q, err := query(r, "target", "since", "until", "limit", "offset")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	target, err := targetParam(q, false)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	since, err := timeParam(q, "since", now)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	until, err := timeParam(q, "until", now)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !since.IsZero() && !until.IsZero() && !until.After(since) {
		a.fail(w, r, &badParam{"until", q.Get("until"), "not after since " + since.UTC().Format(time.RFC3339Nano)})
		return
	}
	limit, err := intParam(q, "limit", DefaultChangesLimit, 1, MaxChangesLimit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	offset, err := intParam(q, "offset", 0, 0, 1<<30)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// One more than the page tells whether another page follows.
	changes, err := a.store.ChangesLimit(target, since, until, offset+limit+1)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if len(changes) == 0 && target != "" {
		if err := a.knownTarget(target); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	all := changes
	changes = all[min(offset, len(all)):]
	if len(changes) > limit {
		changes = changes[:limit]
		w.Header().Set("Link", "<"+nextChanges(r.URL, q, all[:offset+limit], until, now)+`>; rel="next"`)
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	for _, c := range changes {
		if err := enc.Encode(c); err != nil {
			a.logger.Debug("api: write changes", "err", err)
			return
		}
	}
}

// nextChanges is the URL of the page after sent (every change of the
// window up to the end of this page): it starts at the time of the last
// change sent, skipping the changes at that very time already sent, so the
// store reads only from there on.
func nextChanges(u *url.URL, q url.Values, sent []snapshot.Change, until, now time.Time) string {
	last := sent[len(sent)-1].At
	skip := 0
	for i := len(sent) - 1; i >= 0 && sent[i].At.Equal(last); i-- {
		skip++
	}
	next := url.Values{}
	if t := q.Get("target"); t != "" {
		next.Set("target", t)
	}
	if until.IsZero() {
		until = now
	}
	next.Set("since", last.UTC().Format(time.RFC3339Nano))
	next.Set("until", until.UTC().Format(time.RFC3339Nano))
	next.Set("offset", strconv.Itoa(skip))
	if q.Has("limit") {
		next.Set("limit", q.Get("limit"))
	}
	return u.Path + "?" + next.Encode()
}

func (a *api) snapshot(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "target", "at", "id", "limit", "offset")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	pg, err := hostsPageParams(q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var sn *snapshot.Snapshot
	if q.Has("id") {
		id := q.Get("id")
		switch {
		case q.Has("target") || q.Has("at"):
			err = &badParam{"id", id, "give either id or target (with at), not both"}
		case id == "" || len(id) > 512 || strings.ContainsFunc(id, unicode.IsControl):
			err = &badParam{"id", id, "want a snapshot id such as dmz/1764050400123456789"}
		default:
			sn, err = a.store.Snapshot(id)
			if errors.Is(err, store.ErrNotFound) {
				err = notFound(fmt.Sprintf("no snapshot with id %q", id))
			}
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		a.writeSnapshot(w, r, sn, pg)
		return
	}
	target, err := targetParam(q, true)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	at, err := timeParam(q, "at", a.now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.knownTarget(target); err != nil {
		a.fail(w, r, err)
		return
	}
	if at.IsZero() {
		sn, err = latestComplete(a.store, a.latest, target)
		if errors.Is(err, store.ErrNotFound) {
			err = notFound(fmt.Sprintf("target %q has no complete scan", target))
		}
	} else {
		sn, err = a.store.At(target, at)
		if errors.Is(err, store.ErrNotFound) {
			err = notFound(fmt.Sprintf("target %q has no complete scan at or before %s", target, at.UTC().Format(time.RFC3339)))
		}
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeSnapshot(w, r, sn, pg)
}

// hostsPage picks a page of a snapshot's hosts; limit 0 means all.
type hostsPage struct{ offset, limit int }

func hostsPageParams(q url.Values) (hostsPage, error) {
	var p hostsPage
	var err error
	if p.limit, err = intParam(q, "limit", 0, 1, MaxSnapshotHostsLimit); err != nil {
		return p, err
	}
	if p.offset, err = intParam(q, "offset", 0, 0, 1<<30); err != nil {
		return p, err
	}
	if q.Has("offset") && !q.Has("limit") {
		return p, &badParam{"offset", q.Get("offset"), "needs limit"}
	}
	return p, nil
}

// writeSnapshot answers with sn, or with the page of its hosts pg picks:
// the same document with hosts offset..offset+limit, the totals in
// X-Total-Hosts and X-Total-Open-Ports, and, when more hosts remain, a
// Link rel="next" that names the snapshot by id, so the pages of one
// listing all come from the same scan while new scans commit.
func (a *api) writeSnapshot(w http.ResponseWriter, r *http.Request, sn *snapshot.Snapshot, pg hostsPage) {
	if pg.limit == 0 {
		a.writeJSON(w, sn)
		return
	}
	w.Header().Set("X-Total-Hosts", strconv.Itoa(len(sn.Hosts)))
	w.Header().Set("X-Total-Open-Ports", strconv.Itoa(sn.OpenPorts()))
	page := *sn
	page.Hosts = sn.Hosts[min(pg.offset, len(sn.Hosts)):]
	if len(page.Hosts) > pg.limit {
		page.Hosts = page.Hosts[:pg.limit]
		next := url.Values{}
		next.Set("id", sn.ID)
		next.Set("offset", strconv.Itoa(pg.offset+pg.limit))
		next.Set("limit", strconv.Itoa(pg.limit))
		w.Header().Set("Link", "<"+r.URL.Path+"?"+next.Encode()+`>; rel="next"`)
	}
	a.writeJSON(w, &page)
}

func (a *api) snapshots(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "target", "limit")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	target, err := targetParam(q, true)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	limit, err := intParam(q, "limit", DefaultSnapshotsLimit, 1, MaxSnapshotsLimit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.knownTarget(target); err != nil {
		a.fail(w, r, err)
		return
	}
	scans, err := a.store.Scans(target, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]ScanInfo, 0, len(scans))
	for _, s := range scans {
		out = append(out, ScanInfo{ID: s.ID, Target: s.Target, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt,
			Complete: s.Complete, Quality: s.Quality, HostsUp: s.HostsUp, OpenPorts: s.OpenPorts})
	}
	a.writeJSON(w, out)
}

// notFoundError is a 404; it wraps store.ErrNotFound.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }
func (e *notFoundError) Unwrap() error { return store.ErrNotFound }

func notFound(msg string) error { return &notFoundError{msg} }

// knownTarget is nil when target has stored scans or changes.
func (a *api) knownTarget(target string) error {
	targets, err := a.store.Targets()
	if err != nil {
		return err
	}
	if slices.Contains(targets, target) {
		return nil
	}
	changes, err := a.store.ChangesLimit(target, time.Time{}, time.Time{}, 1)
	if err != nil {
		return err
	}
	if len(changes) > 0 {
		return nil
	}
	return notFound(fmt.Sprintf("unknown target %q: no scans or changes stored", target))
}

func (a *api) writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		a.logger.Debug("api: write response", "err", err)
	}
}

func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	var bp *badParam
	var nf *notFoundError
	switch {
	case errors.As(err, &bp):
		writeAPIError(w, http.StatusBadRequest, bp.Error())
	case errors.As(err, &nf):
		writeAPIError(w, http.StatusNotFound, nf.Error())
	default:
		a.logger.Error("api: read store", "path", r.URL.Path, "err", err)
		writeAPIError(w, http.StatusInternalServerError, err.Error())
	}
}

func writeAPIError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(APIError{Error: msg})
}
