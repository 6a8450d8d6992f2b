package contrib_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/internal/testnet"
)

const dashboardFile = "grafana/exposure.json"

// dashQuery is one PromQL expression of the dashboard and where it is.
type dashQuery struct {
	where string // panel title and refId, or the annotation or variable name
	expr  string
}

type dashboard struct {
	UID         string                          `json:"uid"`
	Title       string                          `json:"title"`
	Panels      []panel                         `json:"panels"`
	Annotations struct{ List []map[string]any } `json:"annotations"`
	Templating  struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(b, &d))
	return d
}

// queries returns every PromQL expression of the dashboard: panel targets,
// annotation queries, and the series selectors inside the template
// variables' label_values(SELECTOR, LABEL).
func (d dashboard) queries(t *testing.T) []dashQuery {
	t.Helper()
	var qs []dashQuery
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			qs = append(qs, dashQuery{p.Title + "/" + tg.RefID, tg.Expr})
		}
	}
	for _, a := range d.Annotations.List {
		if e, ok := a["expr"].(string); ok {
			qs = append(qs, dashQuery{"annotation " + fmt.Sprint(a["name"]), e})
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, ok := v.Query.(map[string]any)
		require.True(t, ok, "variable %s: query is not an object", v.Name)
		m := labelValues.FindStringSubmatch(fmt.Sprint(q["query"]))
		require.NotNil(t, m, "variable %s: not label_values(selector, label): %v", v.Name, q["query"])
		qs = append(qs, dashQuery{"variable " + v.Name, fmt.Sprintf("count by (%s) (%s)", m[2], m[1])})
	}
	return qs
}

var grafanaVar = regexp.MustCompile(`\$(?:\{(\w+)(?::\w+)?\}|(\w+))`)

// expand replaces Grafana's variables by what "All" and a short time range
// would give. An unknown variable is an error: it would stay literal in
// Grafana and break the query.
func expand(expr string) (string, error) {
	values := map[string]string{
		"job": ".*", "instance": ".*", "target": ".*",
		"__rate_interval": "30s", "__interval": "15s", "__range": "10m",
	}
	var unknown []string
	out := grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		sm := grafanaVar.FindStringSubmatch(m)
		name := sm[1] + sm[2]
		v, ok := values[name]
		if !ok {
			unknown = append(unknown, m)
			return m
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown variables %v in %q", unknown, expr)
	}
	return out, nil
}

// TestGrafanaDashboardStructure checks what Grafana itself would refuse or
// render badly, and that the panels the issue asks for are there.
func TestGrafanaDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	require.NotEmpty(t, d.UID)
	require.Equal(t, "exposure", d.Title)

	ids := map[int]bool{}
	type rect struct{ x, y, w, h int }
	var rects []rect
	var titles []string
	for _, p := range d.Panels {
		require.False(t, ids[p.ID], "duplicate panel id %d", p.ID)
		ids[p.ID] = true
		g := p.GridPos
		require.True(t, g.W > 0 && g.H > 0 && g.X >= 0 && g.X+g.W <= 24, "panel %q: gridPos %+v", p.Title, g)
		for _, r := range rects {
			overlap := g.X < r.x+r.w && r.x < g.X+g.W && g.Y < r.y+r.h && r.y < g.Y+g.H
			require.False(t, overlap, "panel %q overlaps another", p.Title)
		}
		rects = append(rects, rect{g.X, g.Y, g.W, g.H})
		titles = append(titles, p.Title)
		if p.Type == "row" {
			continue
		}
		require.NotNil(t, p.Datasource, "panel %q", p.Title)
		require.Equal(t, "${datasource}", p.Datasource.UID, "panel %q", p.Title)
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			require.NotEmpty(t, strings.TrimSpace(tg.Expr), "panel %q", p.Title)
			require.False(t, refs[tg.RefID], "panel %q: duplicate refId %s", p.Title, tg.RefID)
			refs[tg.RefID] = true
		}
	}
	for _, want := range []string{
		"Open ports per target", "Changes by kind", "Services and versions",
		"Scan duration (p90, mean)", "Age of last successful scan", "Alert outbox",
		"Notifications by receiver and result",
	} {
		require.Contains(t, titles, want)
	}

	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	for _, name := range []string{"datasource", "job", "instance", "target"} {
		require.True(t, vars[name], "variable %s", name)
	}
	qs := d.queries(t)
	require.GreaterOrEqual(t, len(qs), 25)
	for _, q := range qs {
		_, err := expand(q.expr)
		require.NoError(t, err, q.where)
	}
}

func TestExpand(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{`rate(x{target=~"$target"}[$__rate_interval])`, `rate(x{target=~".*"}[30s])`, false},
		{`x{job=~"${job}", instance=~"${instance:regex}"}`, `x{job=~".*", instance=~".*"}`, false},
		{`increase(x[$__range])`, `increase(x[10m])`, false},
		{`x{target=~"$tagret"}`, "", true},
	} {
		got, err := expand(tc.in)
		if tc.err {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got)
	}
}

func listen(t *testing.T, port int) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
	require.NoError(t, err)
	return l
}

// serveBanner is a server that greets like OpenSSH, so service detection
// finds a product and a version.
func serveBanner(t *testing.T, banner string) uint16 {
	return testnet.Serve(t, listen(t, 0), func(c net.Conn) {
		if _, err := io.WriteString(c, banner); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<16))
	})
}

// serveTLS is a TLS server with a self-signed certificate that expires at
// notAfter; it answers whatever comes inside TLS with a short HTTP
// response. (It is not net/http's server: that one answers plain HTTP on a
// TLS port with a 400, which service detection may take for plain http.)
func serveTLS(t *testing.T, notAfter time.Time) uint16 {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "exposure-test.example.test"},
		DNSNames:     []string{"exposure-test.example.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	l := tls.NewListener(listen(t, 0), &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS12,
	})
	return testnet.Serve(t, l, func(c net.Conn) {
		buf := make([]byte, 4096)
		if _, err := c.Read(buf); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.0 200 OK\r\nServer: exposure-test\r\nContent-Length: 6\r\n\r\nhello\n")
	})
}

// ruleExprs reads the expressions of contrib/prometheus/rules.yml.
func ruleExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("prometheus", "rules.yml"))
	require.NoError(t, err)
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(b, &f))
	var out []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, r.Expr)
		}
	}
	require.NotEmpty(t, out)
	return out
}

var metricName = regexp.MustCompile(`\bexposure_[a-z_]+\b`)

// TestLabGrafanaDashboard runs a real daemon (built from this tree) against
// loopback listeners the test opens (an SSH-like banner, an HTTPS server,
// a tarpit, and later a port the policy forbids), lets a real Prometheus
// (the Debian package) scrape it every second with contrib's rules loaded,
// and then requires that every query of the dashboard parses and returns
// data, that every exposure_* metric the dashboard and the rules name is
// exported, that every rule evaluates cleanly, and that the certificate
// rule sees the test's certificate.
func TestLabGrafanaDashboard(t *testing.T) {
	lab.RequireBinary(t, "prometheus", "go")
	d := loadDashboard(t)
	queries := d.queries(t)
	bin := lab.BuildExposure(t)
	dir := t.TempDir()

	sshPort := serveBanner(t, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
	tlsPort := serveTLS(t, time.Now().Add(10*24*time.Hour))
	// The tarpit accepts and never answers: service detection waits on it
	// past the slow target's timeout, so its scans are incomplete and its
	// every-second schedule skips runs.
	tarpitPort := testnet.Serve(t, listen(t, 0), func(c net.Conn) {
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<16))
	})
	forbiddenPort := lab.FreePort(t)

	cfg := fmt.Sprintf(`global:
  run_at_start: true
  jitter: 0s
  interface: lo
defaults:
  schedule: "@every 5s"
  service_detection: {enabled: true, timeout: 3s}
targets:
  - name: loop
    hosts: [127.0.0.1]
    ports: "%[1]d,%[2]d,%[3]d"
    labels: {env: test}
    expect:
      open: [%[1]d, %[2]d]
      never_open: [%[3]d]
  - name: slow
    hosts: [127.0.0.1]
    ports: "%[4]d"
    schedule: "@every 1s"
    timeout: 2s
receivers:
  - name: log
    log: {}
`, sshPort, tlsPort, forbiddenPort, tarpitPort)
	cfgFile := filepath.Join(dir, "exposure.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfg), 0o644))
	daemon := lab.StartExposureDaemon(t, lab.ExposureOptions{Bin: bin, Config: cfgFile, DB: filepath.Join(dir, "exposure.db"), ReadyTimeout: time.Minute})

	rules, err := filepath.Abs(filepath.Join("prometheus", "rules.yml"))
	require.NoError(t, err)
	prom := lab.StartPrometheus(t, lab.PrometheusOptions{Target: daemon.Addr, RuleFiles: []string{rules}})

	// Wait for Prometheus to hold the baseline scan (both allowed ports
	// open), then open the forbidden port: a firewall regression that the
	// next scan reports as port_opened and forbidden_open.
	require.Eventually(t, func() bool {
		n, _, err := prom.Query(`exposure_open_ports{target="loop"} == 2`)
		return err == nil && n == 1
	}, 90*time.Second, time.Second, "baseline scan never reached Prometheus")
	testnet.Serve(t, listen(t, forbiddenPort), func(c net.Conn) {
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<16))
	})

	// Everything the dashboard and the rules name.
	names := map[string]bool{}
	for _, q := range queries {
		for _, m := range metricName.FindAllString(q.expr, -1) {
			names[m] = true
		}
	}
	for _, e := range ruleExprs(t) {
		for _, m := range metricName.FindAllString(e, -1) {
			names[m] = true
		}
	}
	var checks []dashQuery
	for _, q := range queries {
		e, err := expand(q.expr)
		require.NoError(t, err, q.where)
		checks = append(checks, dashQuery{q.where, e})
	}
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	}) {
		checks = append(checks, dashQuery{"metric " + n, n})
	}
	certAlert := fmt.Sprintf(`ALERTS{alertname="ExposureTLSCertExpiringSoon", port="%d", alertstate="pending"}`, tlsPort)
	checks = append(checks,
		dashQuery{"forbidden port reported", fmt.Sprintf(`exposure_port_open{target="loop", port="%d"}`, forbiddenPort)},
		dashQuery{"forbidden_open counted", `exposure_changes_total{target="loop", kind="forbidden_open"} >= 1`},
		dashQuery{"OpenSSH detected", fmt.Sprintf(`exposure_service_info{port="%d", product="OpenSSH"}`, sshPort)},
		dashQuery{"certificate rule pending", certAlert},
	)

	// Poll until every check returns data; queries Prometheus rejects fail
	// at once.
	deadline := time.Now().Add(2 * time.Minute)
	var empty []string
	for {
		empty = empty[:0]
		for _, c := range checks {
			n, bad, err := prom.Query(c.expr)
			require.False(t, bad, "%s: %s: %v", c.where, c.expr, err)
			if err != nil || n == 0 {
				empty = append(empty, fmt.Sprintf("%s: %s (err %v)", c.where, c.expr, err))
			}
		}
		rs, err := prom.Rules()
		require.NoError(t, err)
		require.Len(t, rs, len(ruleExprs(t)))
		for _, r := range rs {
			if r.Health != "ok" {
				empty = append(empty, fmt.Sprintf("rule %s: health %q %s", r.Name, r.Health, r.LastError))
			}
		}
		if len(empty) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	require.Empty(t, empty, "queries without data or rules not healthy")
	t.Logf("%d dashboard queries, %d metric names, %d rules: all returned data", len(queries), len(names), len(ruleExprs(t)))

	// Only the certificate rule may be pending: everything else in the lab
	// is healthy or too young for its threshold, except the slow target,
	// whose scans all end incomplete.
	alerts, err := prom.Alerts()
	require.NoError(t, err)
	var got []string
	for _, a := range alerts {
		got = append(got, a.Labels["alertname"]+" "+a.Labels["target"]+" "+a.State)
	}
	slices.Sort(got)
	got = slices.Compact(got)
	for _, a := range got {
		require.True(t, strings.HasPrefix(a, "ExposureTLSCertExpiringSoon loop ") || strings.HasPrefix(a, "ExposureScanErrorRate slow "), "unexpected alert %q (all: %v)", a, got)
	}
	require.Contains(t, got, "ExposureTLSCertExpiringSoon loop pending")
}
