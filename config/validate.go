package config

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"

	"github.com/exposure-monitor/exposure/diff"
	"github.com/exposure-monitor/exposure/scanner"
	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// RouteKinds returns the change kinds a route may name: snapshot's kinds
// table, scan_failing included.
func RouteKinds() []string {
	var out []string
	for _, k := range snapshot.Kinds() {
		out = append(out, string(k.Kind))
	}
	return out
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

const maxNameLen = 64

// validator checks a decoded Config, resolves the targets' inherited
// settings and parses specs, reporting through the decoder so errors carry
// the lines it recorded.
type validator struct {
	d *decoder
	c *Config
}

func (c *Config) validate(d *decoder) {
	v := &validator{d: d, c: c}
	v.global(&c.Global)
	v.scan(&c.Defaults, "defaults", func(string) bool { return true })
	targets := v.targets()
	v.receivers(targets)
}

// isSet reports whether path was given in the file.
func (v *validator) isSet(path string) bool {
	_, ok := v.d.set[path]
	return ok
}

// line is the line of path, or of its closest ancestor present in the file.
func (v *validator) line(path string) int {
	for path != "" {
		if l, ok := v.d.set[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

func (v *validator) errorf(path, value, format string, args ...any) {
	for p := path; p != ""; {
		if v.d.bad[p] {
			return // already reported while decoding
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	v.d.errorf(v.line(path), path, value, format, args...)
}

func (v *validator) atLeast(path string, n, min int) {
	if n < min {
		v.errorf(path, strconv.Itoa(n), "must be at least %d", min)
	}
}

func (v *validator) between(path string, n, lo, hi int) {
	if n < lo || n > hi {
		v.errorf(path, strconv.Itoa(n), "must be between %d and %d", lo, hi)
	}
}

func (v *validator) positive(path string, d model.Duration) {
	if d <= 0 {
		v.errorf(path, d.String(), "must be longer than 0s")
	}
}

func (v *validator) oneOf(path, value string, allowed []string) bool {
	if slices.Contains(allowed, value) {
		return true
	}
	v.errorf(path, value, "must be one of %s", strings.Join(allowed, ", "))
	return false
}

func (v *validator) name(path, name, what string) {
	switch {
	case name == "":
		v.errorf(path, "", "%s name is required", what)
	case len(name) > maxNameLen:
		v.errorf(path, name, "longer than %d characters", maxNameLen)
	case !nameRe.MatchString(name):
		v.errorf(path, name, "must start with a letter or digit and contain only letters, digits, '.', '_' and '-'")
	}
}

func (v *validator) global(g *Global) {
	v.atLeast("global.scan_rate", g.ScanRate, 1)
	v.positive("global.retention", g.Retention)
	v.atLeast("global.max_concurrent_scans", g.MaxConcurrentScans, 1)
	v.atLeast("global.series_budget", g.SeriesBudget, 0)
	v.atLeast("global.shard.total", g.Shard.Total, 1)
	if g.Shard.Index < 0 || (g.Shard.Total >= 1 && g.Shard.Index >= g.Shard.Total) {
		v.errorf("global.shard.index", strconv.Itoa(g.Shard.Index), "must be at least 0 and less than shard.total (%d)", g.Shard.Total)
	}
	if g.AllOpenShare <= 0 || g.AllOpenShare > 1 {
		v.errorf("global.all_open_share", strconv.FormatFloat(g.AllOpenShare, 'g', -1, 64), "must be greater than 0 and at most 1")
	}
	v.between("global.confirm.m", g.Confirm.M, 0, 10)
	switch {
	case g.Confirm.M == 0 && !v.isSet("global.confirm.n"):
		g.Confirm.N = 0 // confirmation off
	case g.Confirm.M == 0 && g.Confirm.N != 0:
		v.errorf("global.confirm.n", strconv.Itoa(g.Confirm.N), "must be 0 when confirm.m is 0 (confirmation off)")
	case g.Confirm.M > 0 && (g.Confirm.N < 1 || g.Confirm.N > g.Confirm.M):
		v.errorf("global.confirm.n", strconv.Itoa(g.Confirm.N), "must be between 1 and confirm.m (%d)", g.Confirm.M)
	}
	v.positive("global.flap.window", g.Flap.Window)
	v.atLeast("global.flap.threshold", g.Flap.Threshold, 2)
	if g.Interface != "" {
		if err := netif.CheckName(g.Interface); err != nil {
			v.errorf("global.interface", g.Interface, "%s", interfaceReason(err))
		}
	}
}

// interfaceReason is the reason part of a netif name error: the value is
// already in the config error.
func interfaceReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// scan validates the fields of s under path for which want returns true,
// and parses its port spec and schedule.
func (v *validator) scan(s *Scan, path string, want func(field string) bool) {
	if want("ports") {
		p, err := spec.ParsePortSpec(s.Ports)
		if err != nil {
			v.specError(path+".ports", s.Ports, err)
		}
		s.PortSpec = p
	}
	if want("schedule") {
		v.schedule(s, path+".schedule")
	}
	if want("timeout") {
		v.positive(path+".timeout", s.Timeout)
	}
	if want("retries") {
		v.between(path+".retries", s.Retries, 0, 10)
	}
	if want("engine") {
		v.oneOf(path+".engine", s.Engine, scanner.EngineKinds())
	}
	sd := &s.ServiceDetection
	if want("service_detection.intensity") {
		v.between(path+".service_detection.intensity", sd.Intensity, 0, 9)
	}
	if want("service_detection.timeout") {
		v.positive(path+".service_detection.timeout", sd.Timeout)
	}
	if want("service_detection.probe_files") {
		for i, f := range sd.ProbeFiles {
			if strings.TrimSpace(f) == "" {
				v.errorf(fmt.Sprintf("%s.service_detection.probe_files[%d]", path, i), "", "empty file name")
			}
		}
	}
}

func (v *validator) schedule(s *Scan, path string) {
	sched, err := ParseSchedule(s.Schedule)
	if err != nil {
		v.errorf(path, s.Schedule, "%s", err.Error())
		return
	}
	s.Sched = sched
}

// specError reports a scanner/spec error; its Value names the offending
// list element.
func (v *validator) specError(path, whole string, err error) {
	var se *spec.Error
	if errors.As(err, &se) {
		v.errorf(path, cmp.Or(se.Value, whole), "%s", se.Reason)
		return
	}
	v.errorf(path, whole, "%s", err.Error())
}

// targets validates every target and returns the set of target names.
func (v *validator) targets() map[string]bool {
	c := v.c
	if len(c.Targets) == 0 {
		v.errorf("targets", "", "at least one target is required")
	}
	names := map[string]string{} // name -> path of first use
	for i, t := range c.Targets {
		path := fmt.Sprintf("targets[%d]", i)
		v.name(path+".name", t.Name, "target")
		if first, dup := names[t.Name]; dup && t.Name != "" {
			v.errorf(path+".name", t.Name, "duplicate target name (first used by %s)", first)
		} else {
			names[t.Name] = path
		}
		v.inherit(t, path)
		v.scan(&t.Scan, path, func(field string) bool { return v.isSet(path + "." + field) })
		if t.Engine == scanner.KindConnect && t.PortSpec.UDP.Len() > 0 {
			v.errorf(path+".ports", t.Ports, "UDP ports need raw sockets: engine connect scans TCP only (use engine syn or auto)")
		}
		v.hosts(t, path)
		v.labels(t.Labels, path+".labels")
		v.expect(t, path+".expect")
		seen := map[string]bool{}
		for j, r := range t.Receivers {
			p := fmt.Sprintf("%s.receivers[%d]", path, j)
			switch {
			case c.Receiver(r) == nil:
				v.errorf(p, r, "no receiver with this name")
			case seen[r]:
				v.errorf(p, r, "listed twice")
			}
			seen[r] = true
		}
	}
	out := map[string]bool{}
	for n := range names {
		out[n] = true
	}
	return out
}

// inherit copies from defaults every scan setting the target leaves out,
// parsed values included (defaults are validated once, at their own lines).
func (v *validator) inherit(t *Target, path string) {
	d := &v.c.Defaults
	set := func(f string) bool { return v.isSet(path + "." + f) }
	if !set("ports") {
		t.Ports, t.PortSpec = d.Ports, d.PortSpec
	}
	if !set("schedule") {
		t.Schedule, t.Sched = d.Schedule, d.Sched
	}
	if !set("timeout") {
		t.Timeout = d.Timeout
	}
	if !set("retries") {
		t.Retries = d.Retries
	}
	if !set("engine") {
		t.Engine = d.Engine
	}
	if !set("reverse_dns") {
		t.ReverseDNS = d.ReverseDNS
	}
	sd, dsd := &t.ServiceDetection, &d.ServiceDetection
	if !set("service_detection.enabled") {
		sd.Enabled = dsd.Enabled
	}
	if !set("service_detection.intensity") {
		sd.Intensity = dsd.Intensity
	}
	if !set("service_detection.timeout") {
		sd.Timeout = dsd.Timeout
	}
	if !set("service_detection.refresh") {
		sd.Refresh = dsd.Refresh
	}
	if !set("service_detection.probe_files") {
		sd.ProbeFiles = slices.Clone(dsd.ProbeFiles)
	}
}

func (v *validator) hosts(t *Target, path string) {
	if len(t.Hosts) == 0 {
		v.errorf(path+".hosts", "", "at least one host is required")
		return
	}
	// Each element alone first, so every bad element is reported.
	ok := true
	for _, list := range []struct {
		field string
		elems []string
	}{{"hosts", t.Hosts}, {"exclude", t.Exclude}} {
		for i, e := range list.elems {
			if _, err := spec.ParseTargets([]string{e}, nil); err != nil {
				v.specError(fmt.Sprintf("%s.%s[%d]", path, list.field, i), e, err)
				ok = false
			}
		}
	}
	if !ok {
		return
	}
	ts, err := spec.ParseTargets(t.Hosts, t.Exclude)
	if err != nil {
		v.specError(path+".hosts", strings.Join(t.Hosts, ","), err)
		return
	}
	t.TargetSpec = ts
	if n := ts.StaticCount(); n > MaxStaticAddresses && !t.AllowLarge {
		v.errorf(path+".hosts", "", "%s addresses, more than %s: set allow_large: true if this is intended",
			thousands(n), thousands(MaxStaticAddresses))
	}
}

// thousands formats n with comma separators (65,536).
func thousands(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (v *validator) labels(labels map[string]string, path string) {
	for _, k := range sortedKeys(labels) {
		p := path + "." + k
		switch {
		case !model.LegacyValidation.IsValidLabelName(k):
			v.errorf(p, "", "invalid label name (letters, digits and '_', not starting with a digit)")
		case strings.HasPrefix(k, "__"):
			v.errorf(p, "", "label names starting with __ are reserved")
		case snapshot.ReservedLabel(k):
			v.errorf(p, "", "reserved label name (set by exposure)")
		case labels[k] == "":
			v.errorf(p, "", "empty label value")
		}
	}
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (v *validator) expect(t *Target, path string) {
	e := &t.Expect
	e.OpenSet = v.isSet(path + ".open")
	// The port spec is known only if it parsed; otherwise its own error
	// is enough.
	scanned := func(p spec.ProtoPort) bool { return t.PortSpec.Len() == 0 || t.PortSpec.Contains(p) }
	notScanned := fmt.Sprintf("not scanned: outside the target's ports %q", t.Ports)
	checkList := func(field string, list []spec.ProtoPort, other map[spec.ProtoPort]bool) map[spec.ProtoPort]bool {
		seen := map[spec.ProtoPort]bool{}
		for i, p := range list {
			fp := fmt.Sprintf("%s.%s[%d]", path, field, i)
			ps := p.String()
			switch {
			case seen[p]:
				v.errorf(fp, ps, "listed twice")
			case other[p]:
				v.errorf(fp, ps, "also listed in expect.open")
			case !scanned(p) && p.Proto == spec.ProtoTCP && scanned(spec.UDP(p.Port)):
				v.errorf(fp, ps, "%s (a bare number is TCP: write U:%d for the UDP port)", notScanned, p.Port)
			case !scanned(p):
				v.errorf(fp, ps, "%s", notScanned)
			}
			seen[p] = true
		}
		return seen
	}
	open := checkList("open", e.Open, nil)
	checkList("never_open", e.NeverOpen, open)
	keys := slices.SortedFunc(maps.Keys(e.Versions), spec.ProtoPort.Compare)
	for _, p := range keys {
		fp := fmt.Sprintf("%s.versions.%s", path, p)
		if _, err := diff.ParseRule(e.Versions[p]); err != nil {
			v.errorf(fp, e.Versions[p], "%s", err.Error())
		} else if !scanned(p) {
			v.errorf(fp, p.String(), "%s", notScanned)
		}
	}
}

func (v *validator) receivers(targets map[string]bool) {
	names := map[string]string{}
	for i, r := range v.c.Receivers {
		path := fmt.Sprintf("receivers[%d]", i)
		v.name(path+".name", r.Name, "receiver")
		if first, dup := names[r.Name]; dup && r.Name != "" {
			v.errorf(path+".name", r.Name, "duplicate receiver name (first used by %s)", first)
		} else {
			names[r.Name] = path
		}
		for _, k := range receiverKinds {
			if k.set(r) && k.validate != nil {
				k.validate(v, r, path+"."+k.name)
			}
		}
		all := ReceiverKinds()
		some, last := strings.Join(all[:len(all)-1], ", "), all[len(all)-1]
		switch kinds := r.kinds(); len(kinds) {
		case 0:
			v.errorf(path, "", "one of %s or %s is required", some, last)
		case 1:
		default:
			v.errorf(path, "", "only one of %s and %s may be set, found %s", some, last, strings.Join(kinds, " and "))
		}
		if !v.isSet(path + ".event_lifetime") {
			r.EventLifetime = DefaultEventLifetime
		}
		v.positive(path+".event_lifetime", r.EventLifetime)
		v.route(&r.Route, path+".route", targets)
	}
}

func (v *validator) timeout(d *model.Duration, path string) {
	if !v.isSet(path) {
		*d = DefaultReceiverTimeout
	}
	v.positive(path, *d)
}

func (v *validator) alertmanager(a *Alertmanager, path string) {
	switch {
	case a.URL != "" && len(a.URLs) > 0:
		v.errorf(path+".urls", "", "set url or urls, not both")
	case a.URL == "" && len(a.URLs) == 0:
		v.errorf(path, "", "url or urls is required")
	case a.URL != "":
		v.url(path+".url", a.URL)
	default:
		seen := map[string]bool{}
		for i, u := range a.URLs {
			p := fmt.Sprintf("%s.urls[%d]", path, i)
			if seen[u] {
				v.errorf(p, redactURL(u), "listed twice")
			}
			seen[u] = true
			v.url(p, u)
		}
	}
	if a.BasicAuth != nil {
		if a.BasicAuth.Username == "" {
			v.errorf(path+".basic_auth.username", "", "username is required")
		}
		if a.BasicAuth.PasswordFile == "" {
			v.errorf(path+".basic_auth.password_file", "", "password_file is required (passwords are never written in the config)")
		}
		if a.BearerTokenFile != "" {
			v.errorf(path+".bearer_token_file", "", "set basic_auth or bearer_token_file, not both")
		}
	}
	v.timeout(&a.Timeout, path+".timeout")
}

func (v *validator) webhook(w *Webhook, path string) {
	if w.URL == "" {
		v.errorf(path+".url", "", "url is required")
	} else {
		v.url(path+".url", w.URL)
	}
	v.timeout(&w.Timeout, path+".timeout")
}

// url accepts absolute http and https URLs without credentials: secrets
// belong in files, so they never show in the config, its dump or its errors.
func (v *validator) url(path, raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		v.errorf(path, redactURL(raw), "invalid URL")
		return
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		v.errorf(path, u.Redacted(), "URL scheme must be http or https")
	case u.Host == "" || u.Hostname() == "":
		v.errorf(path, u.Redacted(), "URL has no host")
	case u.User != nil:
		v.errorf(path, u.Redacted(), "credentials in the URL are not allowed: use basic_auth with password_file")
	}
}

// redactURL hides the password of a URL that may not even parse.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if at := strings.LastIndex(raw, "@"); at >= 0 {
		return "xxxxx" + raw[at:]
	}
	return raw
}

func (v *validator) route(r *Route, path string, targets map[string]bool) {
	for i, t := range r.Targets {
		if !targets[t] {
			v.errorf(fmt.Sprintf("%s.targets[%d]", path, i), t, "no target with this name")
		}
	}
	for i, k := range r.Kinds {
		v.oneOf(fmt.Sprintf("%s.kinds[%d]", path, i), k, RouteKinds())
	}
	if !v.isSet(path + ".min_severity") {
		r.MinSeverity = DefaultMinSeverity
	}
	v.oneOf(path+".min_severity", r.MinSeverity, snapshot.Severities())
}
