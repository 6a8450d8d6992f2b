package monitor

import (
	"bytes"
	_ "embed"
	"html/template"
	"net/http"
	"net/url"
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
	// Ports is one page of the open ports of the latest complete scans
	// (PortsPage), of the target PortsTarget when one is picked; Targets
	// is one page of the targets (TargetsPage).
	Ports       []statusPort
	PortsPage   statusPager
	PortsTarget string
	TargetsPage statusPager
	Changes     []statusChange
}

// Status page paging: the open-ports and targets tables show a page each,
// chosen with ?offset=&limit= (ports; &target= picks one target's) and
// ?targets_offset=&targets_limit=, so a page stays a few hundred
// kilobytes at any estate size.
const (
	DefaultStatusPorts   = 500
	MaxStatusPorts       = 5000
	DefaultStatusTargets = 200
	MaxStatusTargets     = 2000
)

// statusPager is the position of one table's page: rows First..Last
// (1-based) of Total, and the links to the neighbouring pages ("" at
// either end).
type statusPager struct {
	Offset, Limit, Total int
	First, Last          int
	Prev, Next           string
}

func newStatusPager(u *url.URL, offKey, limKey string, offset, limit, total, shown int) statusPager {
	p := statusPager{Offset: offset, Limit: limit, Total: total}
	if shown > 0 {
		p.First, p.Last = offset+1, offset+shown
	}
	link := func(off int) string {
		q := u.Query()
		q.Set(offKey, strconv.Itoa(off))
		q.Set(limKey, strconv.Itoa(limit))
		return "/?" + q.Encode()
	}
	if offset > 0 {
		p.Prev = link(max(0, offset-limit))
	}
	if offset+limit < total {
		p.Next = link(offset + limit)
	}
	return p
}

// statusParams reads the paging parameters of the status page.
type statusParams struct {
	portsOffset, portsLimit     int
	targetsOffset, targetsLimit int
	target                      string
}

func parseStatusParams(q url.Values) (statusParams, error) {
	var p statusParams
	var err error
	for _, f := range []struct {
		dst          *int
		name         string
		def, lo, max int
	}{
		{&p.portsOffset, "offset", 0, 0, 1 << 30},
		{&p.portsLimit, "limit", DefaultStatusPorts, 1, MaxStatusPorts},
		{&p.targetsOffset, "targets_offset", 0, 0, 1 << 30},
		{&p.targetsLimit, "targets_limit", DefaultStatusTargets, 1, MaxStatusTargets},
	} {
		if *f.dst, err = intParam(q, f.name, f.def, f.lo, f.max); err != nil {
			return p, err
		}
	}
	p.target = q.Get("target")
	return p, nil
}

// recentChanges bounds the timeline.
const (
	recentChangesWindow = 7 * 24 * time.Hour
	recentChangesMax    = 100
)

func (d *daemonState) statusPage(w http.ResponseWriter, r *http.Request) {
	params, err := parseStatusParams(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc := d.current.Load()
	now := d.opts.Now()
	data := statusData{Now: now, Config: configName(rc.cfg), PortsTarget: params.target}
	for i, t := range rc.targets {
		st := statusTarget{
			Name: t.Name, Hosts: strings.Join(t.Hosts, ", "), Ports: t.Ports, Schedule: t.Schedule,
			Next: d.sched.next(t.Name),
		}
		st.Last, st.Scanned = d.status.lastRun(t.Name)
		st.Finished = st.Last.Started.Add(st.Last.Duration)
		if st.Scanned && st.Last.Result != resultSuccess {
			data.Failing++
		}
		if i >= params.targetsOffset && i < params.targetsOffset+params.targetsLimit {
			data.Targets = append(data.Targets, st)
		}
	}
	data.TargetsPage = newStatusPager(r.URL, "targets_offset", "targets_limit",
		params.targetsOffset, params.targetsLimit, len(rc.targets), len(data.Targets))
	d.statusHealth(&data)
	var total int
	data.Ports, total = d.collector.portsPage(params.target, params.portsOffset, params.portsLimit)
	data.PortsPage = newStatusPager(r.URL, "offset", "limit", params.portsOffset, params.portsLimit, total, len(data.Ports))
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

// portsPage returns the open ports offset..offset+limit of the latest
// complete scans, target by target in name order (only target's when it
// is not ""), each in its snapshot's order (hosts by address, ports by
// number), and how many there are in all. Only the page is built: the
// rest is counted.
func (c *portCollector) portsPage(target string, offset, limit int) ([]statusPort, int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	names := make([]string, 0, len(c.latest))
	for name := range c.latest {
		if target == "" || name == target {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var out []statusPort
	total := 0
	for _, name := range names {
		s := c.latest[name]
		for _, h := range s.Hosts() {
			n := 0
			for _, p := range h.Ports {
				if p.State == snapshot.StateOpen {
					n++
				}
			}
			if n > 0 && total+n > offset && len(out) < limit {
				ps := statusPorts(&snapshot.Snapshot{Target: name, Hosts: []snapshot.Host{*h}})
				ps = ps[min(len(ps), max(0, offset-total)):]
				out = append(out, ps[:min(len(ps), limit-len(out))]...)
			}
			total += n
		}
	}
	return out, total
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
