package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/exposure-monitor/exposure/internal/textsafe"
	"github.com/exposure-monitor/exposure/monitor"
	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
)

// reader is what history, diff and show read: the database file, or the
// running daemon's API when the daemon holds the file. Both answer with the
// same data and the same not-found messages, so the commands print the same
// either way.
type reader interface {
	Changes(target string, from, to time.Time) ([]snapshot.Change, error)
	LatestComplete(target string) (*snapshot.Snapshot, error)
	At(target string, t time.Time) (*snapshot.Snapshot, error)
	Snapshot(id string) (*snapshot.Snapshot, error)
	Scans(target string, limit int) ([]store.ScanInfo, error)
	Close() error
}

var (
	_ reader = fileReader{}
	_ reader = (*apiReader)(nil)
)

// source is where the read-only commands find the data.
type source struct {
	path     *string
	webURL   *string
	user     *string
	passFile *string
}

// defaultWebURL is the daemon's default listen address, for a daemon that
// recorded no API file.
const defaultWebURL = "http://" + defaultListenAddress

// sourceFlags adds --storage.path and the flags that reach the daemon's API.
func sourceFlags(cmd *kingpin.CmdClause) *source {
	return &source{
		path: storageFlag(cmd),
		webURL: cmd.Flag("web.url", "The running daemon's web address; read from its API when the daemon holds the database file. Default: the URL the daemon recorded beside the database (PATH"+monitor.APIFileSuffix+"), else "+defaultWebURL+".").
			PlaceHolder("URL").String(),
		user:     cmd.Flag("web.basic-auth-user", "Basic auth user for --web.url (the daemon's --web.config.file).").String(),
		passFile: cmd.Flag("web.basic-auth-password-file", "File holding the basic auth password for --web.url.").PlaceHolder("PATH").String(),
	}
}

// open opens the database file read-only; if a running daemon holds it, it
// reads from the daemon's API instead (webURL) and says so in one log line.
// When the API fails as well, the error gives both reasons.
func (src *source) open(ctx context.Context, e *env) (reader, error) {
	path := *src.path
	if path == "" {
		path = monitor.DefaultStoragePath(os.Getenv("STATE_DIRECTORY"))
	}
	// Only a daemon takes the exclusive lock, and it keeps it while it
	// runs: waiting longer for it only delays the answer from its API.
	s, err := store.Open(path, store.Options{ReadOnly: true, Timeout: 250 * time.Millisecond})
	if err == nil {
		return fileReader{s}, nil
	}
	if !errors.Is(err, store.ErrLocked) {
		return nil, err
	}
	lockErr := fmt.Errorf("%w; a running daemon holds it", err)
	webURL, from, err := src.webURLFor(path)
	if err != nil {
		return nil, fmt.Errorf("%w; and %w", lockErr, err)
	}
	a, err := src.api(ctx, webURL, lockErr)
	if err != nil {
		return nil, err
	}
	attrs := []any{"path", path, "url", a.display}
	if from != "" {
		attrs = append(attrs, "recorded_in", from)
	}
	e.logger.Info("database is locked by the running daemon; reading from its API", attrs...)
	return a, nil
}

// webURLFor is where the daemon holding the database at path serves its
// API: --web.url when given, else the URL the daemon recorded beside the
// database (from names that file), else defaultWebURL.
func (src *source) webURLFor(path string) (webURL, from string, err error) {
	if *src.webURL != "" {
		return *src.webURL, "", nil
	}
	u, err := monitor.ReadAPIURL(path)
	switch {
	case err == nil:
		return u, monitor.APIFile(path), nil
	case errors.Is(err, fs.ErrNotExist):
		return defaultWebURL, "", nil
	default:
		return "", "", fmt.Errorf("the daemon's API file: %w", err)
	}
}

func (src *source) api(ctx context.Context, webURL string, lockErr error) (*apiReader, error) {
	base, err := url.Parse(webURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("%w; and --web.url %q is not an http(s) URL", lockErr, webURL)
	}
	a := &apiReader{ctx: ctx, base: base, display: base.Redacted(), client: &http.Client{Timeout: 30 * time.Second}, lockErr: lockErr}
	if base.User != nil { // http://user:pass@host also works
		a.user = base.User.Username()
		a.password, _ = base.User.Password()
		base.User = nil
	}
	if base.Path == "" {
		base.Path = "/"
	}
	if *src.user != "" {
		a.user = *src.user
	}
	if *src.passFile != "" {
		b, err := os.ReadFile(*src.passFile)
		if err != nil {
			return nil, fmt.Errorf("%w; and reading the API password: %w", lockErr, err)
		}
		a.password = strings.TrimRight(string(b), "\r\n")
	}
	return a, nil
}

// Not-found messages, the same as the API's (monitor/api.go), so that both
// sources fail alike.
func unknownTarget(target string) error {
	return fmt.Errorf("unknown target %q: no scans or changes stored: %w", target, store.ErrNotFound)
}

// fileReader reads the database file.
type fileReader struct{ s *store.Store }

func (f fileReader) Close() error { return f.s.Close() }

// known is nil when target has stored scans or changes.
func (f fileReader) known(target string) error {
	targets, err := f.s.Targets()
	if err != nil {
		return err
	}
	if slices.Contains(targets, target) {
		return nil
	}
	changes, err := f.s.Changes(target, time.Time{}, time.Time{})
	if err != nil {
		return err
	}
	if len(changes) == 0 {
		return unknownTarget(target)
	}
	return nil
}

func (f fileReader) Changes(target string, from, to time.Time) ([]snapshot.Change, error) {
	changes, err := f.s.Changes(target, from, to)
	if err == nil && len(changes) == 0 && target != "" {
		err = f.known(target)
	}
	return changes, err
}

func (f fileReader) LatestComplete(target string) (*snapshot.Snapshot, error) {
	if err := f.known(target); err != nil {
		return nil, err
	}
	sn, err := f.s.LatestComplete(target)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("target %q has no complete scan: %w", target, store.ErrNotFound)
	}
	return sn, err
}

func (f fileReader) At(target string, t time.Time) (*snapshot.Snapshot, error) {
	if err := f.known(target); err != nil {
		return nil, err
	}
	sn, err := f.s.At(target, t)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("target %q has no complete scan at or before %s: %w", target, t.UTC().Format(time.RFC3339), store.ErrNotFound)
	}
	return sn, err
}

func (f fileReader) Snapshot(id string) (*snapshot.Snapshot, error) {
	sn, err := f.s.Snapshot(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no snapshot with id %q: %w", id, store.ErrNotFound)
	}
	return sn, err
}

func (f fileReader) Scans(target string, limit int) ([]store.ScanInfo, error) {
	if err := f.known(target); err != nil {
		return nil, err
	}
	return f.s.Scans(target, limit)
}

// apiReader reads the daemon's API (monitor.APIHandler).
type apiReader struct {
	ctx  context.Context
	base *url.URL
	// display is the API's URL as given, its password redacted.
	display        string
	client         *http.Client
	user, password string
	// lockErr is why the file was not read; it goes with every failure of
	// the API itself, so the user sees both reasons.
	lockErr error
}

// maxBody bounds one API answer.
const maxBody = 512 << 20

// maxPages bounds the pages of changes one history reads.
const maxPages = 100000

func (a *apiReader) Close() error {
	a.client.CloseIdleConnections()
	return nil
}

// failed joins a failure of the API with the reason it was asked.
func (a *apiReader) failed(err error) error {
	return fmt.Errorf("%w; and the daemon's API at %s failed too: %w", a.lockErr, a.display, err)
}

// get requests endpoint with q and hands the body of a 200 to read. An
// answer of the API (400, 404) becomes its message; anything else is a
// failure of the API.
func (a *apiReader) get(endpoint string, q url.Values, read func(h http.Header, body io.Reader) error) error {
	u := a.base.JoinPath("api", "v1", endpoint)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(a.ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return a.failed(err)
	}
	if a.user != "" || a.password != "" {
		req.SetBasicAuth(a.user, a.password)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return a.failed(err)
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, maxBody)
	if resp.StatusCode == http.StatusOK {
		if err := read(resp.Header, body); err != nil {
			return a.failed(fmt.Errorf("read %s: %w", endpoint, err))
		}
		return nil
	}
	var apiErr monitor.APIError
	isAPI := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") &&
		json.NewDecoder(io.LimitReader(body, 64<<10)).Decode(&apiErr) == nil && apiErr.Error != ""
	switch {
	case isAPI && resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s: %w", textsafe.Clean(apiErr.Error, 512), store.ErrNotFound)
	case isAPI && resp.StatusCode == http.StatusBadRequest:
		return errors.New(textsafe.Clean(apiErr.Error, 512))
	case isAPI:
		return a.failed(fmt.Errorf("%s: %s", resp.Status, textsafe.Clean(apiErr.Error, 512)))
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return a.failed(fmt.Errorf("GET %s: %s (see --web.basic-auth-user and --web.basic-auth-password-file)", u.Path, textsafe.Clean(resp.Status, 64)))
	default:
		return a.failed(fmt.Errorf("GET %s: %s (is it an exposure daemon with /api/v1?)", u.Path, textsafe.Clean(resp.Status, 64)))
	}
}

func (a *apiReader) getJSON(endpoint string, q url.Values, v any) error {
	return a.get(endpoint, q, func(_ http.Header, body io.Reader) error {
		return json.NewDecoder(body).Decode(v)
	})
}

var nextLink = regexp.MustCompile(`<([^>]*)>\s*;\s*rel="?next"?`)

func (a *apiReader) Changes(target string, from, to time.Time) ([]snapshot.Change, error) {
	q := url.Values{"limit": {strconv.Itoa(monitor.MaxChangesLimit)}}
	if target != "" {
		q.Set("target", target)
	}
	if !from.IsZero() {
		q.Set("since", from.UTC().Format(time.RFC3339Nano))
	}
	if !to.IsZero() {
		q.Set("until", to.UTC().Format(time.RFC3339Nano))
	}
	out := []snapshot.Change{}
	for page := 0; q != nil; page++ {
		if page == maxPages {
			return nil, a.failed(fmt.Errorf("more than %d pages of changes", maxPages))
		}
		var next url.Values
		err := a.get("changes", q, func(h http.Header, body io.Reader) error {
			sc := bufio.NewScanner(body)
			sc.Buffer(nil, 16<<20)
			for sc.Scan() {
				var c snapshot.Change
				if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
					return fmt.Errorf("change %d: %w", len(out)+1, err)
				}
				out = append(out, c)
			}
			if err := sc.Err(); err != nil {
				return err
			}
			// Follow only the query of the next link, on our own base URL
			// (a proxy in front of the daemon may add a path prefix).
			if m := nextLink.FindStringSubmatch(h.Get("Link")); m != nil {
				u, err := url.Parse(m[1])
				if err != nil {
					return fmt.Errorf("next link %q: %w", textsafe.Clean(m[1], 200), err)
				}
				next = u.Query()
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		q = next
	}
	return out, nil
}

func (a *apiReader) LatestComplete(target string) (*snapshot.Snapshot, error) {
	var sn snapshot.Snapshot
	if err := a.getJSON("snapshot", url.Values{"target": {target}}, &sn); err != nil {
		return nil, err
	}
	return &sn, nil
}

func (a *apiReader) At(target string, t time.Time) (*snapshot.Snapshot, error) {
	var sn snapshot.Snapshot
	if err := a.getJSON("snapshot", url.Values{"target": {target}, "at": {t.UTC().Format(time.RFC3339Nano)}}, &sn); err != nil {
		return nil, err
	}
	return &sn, nil
}

func (a *apiReader) Snapshot(id string) (*snapshot.Snapshot, error) {
	var sn snapshot.Snapshot
	if err := a.getJSON("snapshot", url.Values{"id": {id}}, &sn); err != nil {
		return nil, err
	}
	return &sn, nil
}

// Scans lists up to limit scans, newest first; limit <= 0 means as many as
// the API gives in one answer (monitor.MaxSnapshotsLimit).
func (a *apiReader) Scans(target string, limit int) ([]store.ScanInfo, error) {
	if limit <= 0 || limit > monitor.MaxSnapshotsLimit {
		limit = monitor.MaxSnapshotsLimit
	}
	var list []monitor.ScanInfo
	if err := a.getJSON("snapshots", url.Values{"target": {target}, "limit": {strconv.Itoa(limit)}}, &list); err != nil {
		return nil, err
	}
	out := make([]store.ScanInfo, 0, len(list))
	for _, s := range list {
		out = append(out, store.ScanInfo{ID: s.ID, Target: s.Target, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt,
			Complete: s.Complete, Quality: s.Quality, HostsUp: s.HostsUp, OpenPorts: s.OpenPorts})
	}
	return out, nil
}
