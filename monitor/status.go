package monitor

import (
	"bytes"
	"cmp"
	_ "embed"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/exposure-monitor/exposure/alert"
	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
)

//go:embed status.html
var statusHTML string

// statusTemplate is parsed once per daemon (no package-level state).
func parseStatusTemplate() *template.Template {
	return template.Must(template.New("status").Funcs(template.FuncMap{
		"age": func(now, t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return roundAge(now.Sub(t)) + " ago"
		},
		"ts": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format(time.RFC3339)
		},
		// when is a timestamp for people: UTC, to the second.
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		// breakable lets a browser wrap a long list after its commas.
		"breakable": func(s string) template.HTML {
			parts := strings.Split(s, ",")
			for i, p := range parts {
				parts[i] = template.HTMLEscapeString(p)
			}
			return template.HTML(strings.Join(parts, ",<wbr>"))
		},
		"dur": func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	}).Parse(statusHTML))
}

func roundAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	default:
		return d.Round(time.Hour).String()
	}
}

// statusBoard remembers the outcome of the last run of each target for the
// status page; after a restart it falls back to the store.
type statusBoard struct {
	store *store.Store
	now   func() time.Time
	tmpl  *template.Template

	mu   sync.Mutex
	last map[string]scanOutcome
}

func newStatusBoard(s *store.Store, now func() time.Time) *statusBoard {
	return &statusBoard{store: s, now: now, tmpl: parseStatusTemplate(), last: map[string]scanOutcome{}}
}

func (b *statusBoard) record(o scanOutcome) {
	b.mu.Lock()
	b.last[o.Target] = o
	b.mu.Unlock()
}

func (b *statusBoard) retain(keep map[string]bool) {
	b.mu.Lock()
	for name := range b.last {
		if !keep[name] {
			delete(b.last, name)
		}
	}
	b.mu.Unlock()
}

func (b *statusBoard) lastRun(target string) (scanOutcome, bool) {
	b.mu.Lock()
	o, ok := b.last[target]
	b.mu.Unlock()
	if ok {
		return o, true
	}
	scans, err := b.store.Scans(target, 1)
	if err != nil || len(scans) == 0 {
		return scanOutcome{}, false
	}
	s := scans[0]
	o = scanOutcome{
		Target: target, Snapshot: s.ID, Started: s.StartedAt, Duration: s.FinishedAt.Sub(s.StartedAt),
		HostsUp: s.HostsUp, OpenPorts: s.OpenPorts, Result: resultSuccess, Incomplete: !s.Complete,
	}
	if !s.Complete {
		o.Result = resultIncomplete
	}
	return o, true
}

type statusTarget struct {
	Name     string
	Hosts    string
	Ports    string
	Schedule string
	Next     time.Time
	Scanned  bool
	Last     scanOutcome
	Finished time.Time
}

type statusPort struct {
	Target, Address, Hostname, Protocol string
	Port                                uint16
	Service, Product, Version, Info     string
	CertNotAfter                        time.Time
}

type statusChange struct {
	At                                    time.Time
	Kind, Severity, Target, Address, Port string
	Before, After, Detail                 string
}

type statusData struct {
	Now     time.Time
	Config  string
	Targets []statusTarget
	// Failing counts targets whose last run failed or was incomplete.
	Failing int
	// Reload is the last reload (nil before any); ReloadFailed says the
	// running configuration is older than the file.
	Reload       *reloadOutcome
	ReloadFailed bool
	// Receivers and their health; ReceiversFailing counts those whose
	// last attempt failed; Pending is the whole outbox; HealthErr says the
	// outbox could not be read.
	Receivers        []alert.ReceiverHealth
	ReceiversFailing int
	Pending          int
	HealthErr        string
	// Problems is everything above that needs a look: failing targets, a
	// failed reload, failing receivers.
	Problems int
	Ports    []statusPort
	Changes  []statusChange
}

// recentChanges bounds the timeline.
const (
	recentChangesWindow = 7 * 24 * time.Hour
	recentChangesMax    = 100
)

func (d *daemonState) statusPage(w http.ResponseWriter, r *http.Request) {
	rc := d.current.Load()
	now := d.opts.Now()
	data := statusData{Now: now, Config: configName(rc.cfg)}
	for _, t := range rc.targets {
		st := statusTarget{
			Name: t.Name, Hosts: strings.Join(t.Hosts, ", "), Ports: t.Ports, Schedule: t.Schedule,
			Next: d.sched.next(t.Name),
		}
		st.Last, st.Scanned = d.status.lastRun(t.Name)
		st.Finished = st.Last.Started.Add(st.Last.Duration)
		if st.Scanned && st.Last.Result != resultSuccess {
			data.Failing++
		}
		data.Targets = append(data.Targets, st)
	}
	d.statusHealth(&data)
	d.collector.mu.RLock()
	for _, s := range d.collector.latest {
		data.Ports = append(data.Ports, statusPorts(s)...)
	}
	d.collector.mu.RUnlock()
	slices.SortFunc(data.Ports, func(a, b statusPort) int {
		return cmp.Or(cmp.Compare(a.Target, b.Target), cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port),
			cmp.Compare(a.Protocol, b.Protocol))
	})
	if changes, err := d.store.Changes("", now.Add(-recentChangesWindow), time.Time{}); err == nil {
		if len(changes) > recentChangesMax {
			changes = changes[len(changes)-recentChangesMax:]
		}
		for i := len(changes) - 1; i >= 0; i-- {
			data.Changes = append(data.Changes, statusChangeOf(changes[i]))
		}
	} else {
		d.logger.Warn("status page: cannot read changes", "err", err)
	}
	var buf bytes.Buffer
	if err := d.status.tmpl.Execute(&buf, data); err != nil {
		d.logger.Error("status page: render", "err", err)
		http.Error(w, "cannot render the status page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

func statusPorts(s *snapshot.Snapshot) []statusPort {
	var out []statusPort
	for _, h := range s.Hosts {
		for _, p := range h.Ports {
			if p.State != snapshot.StateOpen {
				continue
			}
			sp := statusPort{Target: s.Target, Address: h.Address, Hostname: h.Hostname, Protocol: p.Protocol, Port: p.Port}
			if sv := p.Service; sv != nil {
				sp.Service = sv.Name
				if sv.Tunnel != "" && sv.Name != "" {
					sp.Service = sv.Tunnel + "/" + sv.Name
				}
				sp.Product, sp.Version, sp.Info = cleanLabel(sv.Product), cleanLabel(sv.Version), cleanLabel(sv.Info)
				if sv.Cert != nil {
					sp.CertNotAfter = sv.Cert.NotAfter
				}
			}
			out = append(out, sp)
		}
	}
	return out
}

func statusChangeOf(c snapshot.Change) statusChange {
	sc := statusChange{
		At: c.At, Kind: string(c.Kind), Severity: alert.SeverityOf(c.Kind).String(),
		Target: c.Target, Address: c.Address, Detail: cleanLabel(c.Detail),
	}
	if c.Port != 0 {
		sc.Port = strconv.Itoa(int(c.Port)) + "/" + c.Protocol
	}
	sc.Before, sc.After = describePort(c.Before), describePort(c.After)
	return sc
}

func describePort(p *snapshot.Port) string {
	if p == nil {
		return ""
	}
	return cleanLabel(strings.TrimSpace(p.State + " " + p.Service.Describe()))
}

// statusHealth fills the reload, receiver and outbox health of the page.
func (d *daemonState) statusHealth(data *statusData) {
	if r := d.lastReload.Load(); r != nil {
		data.Reload, data.ReloadFailed = r, r.Err != ""
	}
	d.dispMu.Lock()
	disp := d.dispatcher
	d.dispMu.Unlock()
	if disp != nil {
		rs, err := disp.Health()
		if err != nil {
			data.HealthErr = cleanError(err)
		}
		data.Receivers = rs
		for _, r := range rs {
			data.Pending += r.Pending
			if r.LastError != "" {
				data.ReceiversFailing++
			}
		}
	}
	data.Problems = data.Failing + data.ReceiversFailing
	if data.ReloadFailed {
		data.Problems++
	}
	if data.HealthErr != "" {
		data.Problems++
	}
}
