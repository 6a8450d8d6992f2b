package lab

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ExposureOptions says how StartExposureDaemon runs `exposure daemon`.
type ExposureOptions struct {
	// Bin is the exposure binary; BuildExposure's if empty.
	Bin string
	// Config and DB are the --config.file and --storage.path.
	Config, DB string
	// Notify gives the daemon a NOTIFY_SOCKET as systemd does, with a 2 s
	// watchdog (WATCHDOG_USEC); ExposureDaemon.Notified lists what it sent.
	Notify bool
	// ReadyTimeout bounds the wait for /-/ready (30 s if zero).
	ReadyTimeout time.Duration
}

// ExposureDaemon is an `exposure daemon` process on a loopback port.
type ExposureDaemon struct {
	*Process
	// Bin, Config and DB are what it runs with; URL is its web address
	// ("http://127.0.0.1:port") and Addr the host:port of it.
	Bin, Config, DB, URL, Addr string

	mu       sync.Mutex
	notified []string
	// sock is the NOTIFY_SOCKET (nil without Notify); collected is closed
	// when collect has read the last datagram on it.
	sock      *net.UnixConn
	collected chan struct{}
}

// StartExposureDaemon runs `exposure daemon` on o.Config and o.DB,
// listening on a fresh loopback port, with its log next to the database,
// and waits until it is ready. It is stopped when the test ends; a test may
// start the same binary on the same store again after stopping it.
func StartExposureDaemon(t testing.TB, o ExposureOptions) *ExposureDaemon {
	t.Helper()
	if o.Bin == "" {
		o.Bin = BuildExposure(t)
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	addr := FreeAddr(t)
	d := &ExposureDaemon{Bin: o.Bin, Config: o.Config, DB: o.DB, URL: "http://" + addr, Addr: addr}
	dir := filepath.Dir(o.DB)
	var env []string
	if o.Notify {
		sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: uniqueName(t, dir, "notify-*.sock"), Net: "unixgram"})
		if err != nil {
			t.Fatalf("lab: notify socket: %v", err)
		}
		t.Cleanup(func() { sock.Close() })
		d.sock, d.collected = sock, make(chan struct{})
		go d.collect(sock)
		env = []string{"NOTIFY_SOCKET=" + sock.LocalAddr().String(), "WATCHDOG_USEC=2000000"}
	}
	d.Process = StartProcess(t, uniqueName(t, dir, "daemon-*.log"), env, o.Bin,
		"daemon", "--config.file", o.Config, "--storage.path", o.DB, "--web.listen-address", addr)
	WaitHTTP(t, d.URL+"/-/ready", o.ReadyTimeout)
	return d
}

// uniqueName returns a path in dir named by pattern that no other file
// has (the file is created and removed again).
func uniqueName(t testing.TB, dir, pattern string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		t.Fatalf("lab: %v", err)
	}
	return name
}

func (d *ExposureDaemon) collect(sock *net.UnixConn) {
	defer close(d.collected)
	buf := make([]byte, 4096)
	for {
		n, err := sock.Read(buf)
		if err != nil {
			return
		}
		d.mu.Lock()
		d.notified = append(d.notified, string(buf[:n]))
		d.mu.Unlock()
	}
}

// Stop is Process.Stop, and then waits until every message the daemon sent
// before it exited has been collected: the last one (STOPPING=1) can still
// sit in the socket's buffer when the process is gone.
func (d *ExposureDaemon) Stop(t testing.TB, sig os.Signal, timeout time.Duration) error {
	t.Helper()
	err := d.Process.Stop(t, sig, timeout)
	if d.sock != nil {
		// Buffered datagrams are read before the deadline fails the read.
		_ = d.sock.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		<-d.collected
	}
	return err
}

// Notified returns the messages the daemon sent to its NOTIFY_SOCKET so
// far, in order.
func (d *ExposureDaemon) Notified() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.notified...)
}

// Metric returns the value of a series of the daemon's /metrics, as
// ParseMetric finds it.
func (d *ExposureDaemon) Metric(t testing.TB, series string) (float64, bool) {
	t.Helper()
	_, body := HTTPGet(d.URL + "/metrics")
	v, ok, err := ParseMetric(body, series)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	return v, ok
}

// Value is Metric with a missing series read as 0.
func (d *ExposureDaemon) Value(t testing.TB, series string) float64 {
	t.Helper()
	v, _ := d.Metric(t, series)
	return v
}

// ParseMetric returns the value of the first series in a Prometheus text
// exposition written exactly as series, or, when series ends in ",", of the
// first one starting with it.
func ParseMetric(body, series string) (float64, bool, error) {
	for _, line := range strings.Split(body, "\n") {
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:sp]
		if name == series || strings.HasSuffix(series, ",") && strings.HasPrefix(name, series) {
			v, err := strconv.ParseFloat(line[sp+1:], 64)
			if err != nil {
				return 0, false, fmt.Errorf("metric line %q: %w", line, err)
			}
			return v, true, nil
		}
	}
	return 0, false, nil
}

// AlertmanagerBin is the Debian package's Alertmanager program.
const AlertmanagerBin = "prometheus-alertmanager"

// Alertmanager is a Debian Alertmanager on loopback, without clustering,
// with its own storage and a receiver that drops everything.
type Alertmanager struct {
	*Process
	// URL is its base address, "http://" + the listen address.
	URL string
}

// StartAlertmanager runs Alertmanager on addr (host:port) until the test
// ends and waits until it is ready.
func StartAlertmanager(t testing.TB, addr string) *Alertmanager {
	t.Helper()
	bin, err := lookPath(AlertmanagerBin)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n"), 0o600); err != nil {
		t.Fatalf("lab: %v", err)
	}
	am := &Alertmanager{URL: "http://" + addr}
	am.Process = StartProcess(t, filepath.Join(dir, "alertmanager.log"), nil, bin,
		"--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	WaitHTTP(t, am.URL+"/-/ready", 30*time.Second)
	return am
}

// Alert is the part of an alert in Alertmanager's GET /api/v2/alerts
// answer that tests look at.
type Alert struct {
	Labels   map[string]string `json:"labels"`
	StartsAt time.Time         `json:"startsAt"`
	EndsAt   time.Time         `json:"endsAt"`
	Status   struct {
		State string `json:"state"`
	} `json:"status"`
}

// Alerts returns the alerts named alertname that Alertmanager lists (the
// active ones, by default), or all of them if alertname is "".
func (am *Alertmanager) Alerts(t testing.TB, alertname string) []Alert {
	t.Helper()
	code, body := HTTPGet(am.URL + "/api/v2/alerts")
	if code != http.StatusOK {
		t.Fatalf("GET %s/api/v2/alerts: %d %s", am.URL, code, Tail(body, 500))
	}
	var all []Alert
	if err := json.Unmarshal([]byte(body), &all); err != nil {
		t.Fatalf("GET %s/api/v2/alerts: %v", am.URL, err)
	}
	if alertname == "" {
		return all
	}
	var out []Alert
	for _, a := range all {
		if a.Labels["alertname"] == alertname {
			out = append(out, a)
		}
	}
	return out
}

// PrometheusOptions says what StartPrometheus scrapes.
type PrometheusOptions struct {
	// Target is the host:port scraped every second as job "exposure".
	Target string
	// RuleFiles are loaded and evaluated every second.
	RuleFiles []string
}

// Prometheus is a Debian Prometheus on loopback with its own storage.
type Prometheus struct {
	*Process
	// URL is its base address, "http://" + the listen address.
	URL    string
	client *http.Client
}

// StartPrometheus runs Prometheus on a fresh loopback port until the test
// ends and waits until it is ready.
func StartPrometheus(t testing.TB, o PrometheusOptions) *Prometheus {
	t.Helper()
	bin, err := lookPath("prometheus")
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	dir := t.TempDir()
	var rules string
	if len(o.RuleFiles) > 0 {
		b, err := json.Marshal(o.RuleFiles)
		if err != nil {
			t.Fatalf("lab: %v", err)
		}
		rules = "rule_files: " + string(b) + "\n"
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
%sscrape_configs:
  - job_name: exposure
    static_configs:
      - targets: [%q]
`, rules, o.Target)), 0o600); err != nil {
		t.Fatalf("lab: %v", err)
	}
	addr := FreeAddr(t)
	p := &Prometheus{URL: "http://" + addr, client: &http.Client{Timeout: 10 * time.Second}}
	p.Process = StartProcess(t, filepath.Join(dir, "prometheus.log"), nil, bin,
		"--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr, "--storage.tsdb.retention.time=1h", "--log.level=warn")
	WaitHTTP(t, p.URL+"/-/ready", time.Minute)
	return p
}

type apiResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

func (p *Prometheus) get(path string, params url.Values) (apiResponse, error) {
	u := p.URL + path
	if params != nil {
		u += "?" + params.Encode()
	}
	resp, err := p.client.Get(u)
	if err != nil {
		return apiResponse{}, err
	}
	defer resp.Body.Close()
	var r apiResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&r); err != nil {
		return apiResponse{}, fmt.Errorf("%s: %w", u, err)
	}
	return r, nil
}

// Query runs an instant query and returns how many series (or 1 for a
// scalar or string) it returned. A query Prometheus rejects is a non-nil
// error with bad set.
func (p *Prometheus) Query(expr string) (n int, bad bool, err error) {
	r, err := p.get("/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return 0, false, err
	}
	if r.Status != "success" {
		return 0, r.ErrorType == "bad_data", fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(r.Data, &d); err != nil {
		return 0, false, err
	}
	switch d.ResultType {
	case "vector", "matrix":
		var rs []json.RawMessage
		if err := json.Unmarshal(d.Result, &rs); err != nil {
			return 0, false, err
		}
		return len(rs), false, nil
	default:
		return 1, false, nil
	}
}

// Series is Query's count with a failed query read as 0.
func (p *Prometheus) Series(expr string) int {
	n, _, err := p.Query(expr)
	if err != nil {
		return 0
	}
	return n
}

// PromRule is a rule as GET /api/v1/rules lists it.
type PromRule struct {
	Name      string `json:"name"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
	Type      string `json:"type"`
}

// Rules lists the rules of every group.
func (p *Prometheus) Rules() ([]PromRule, error) {
	var d struct {
		Groups []struct {
			Rules []PromRule `json:"rules"`
		} `json:"groups"`
	}
	if err := p.getData("/api/v1/rules", &d); err != nil {
		return nil, err
	}
	var out []PromRule
	for _, g := range d.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// PromAlert is an alert as GET /api/v1/alerts lists it.
type PromAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

// Alerts lists the pending and firing alerts.
func (p *Prometheus) Alerts() ([]PromAlert, error) {
	var d struct {
		Alerts []PromAlert `json:"alerts"`
	}
	if err := p.getData("/api/v1/alerts", &d); err != nil {
		return nil, err
	}
	return d.Alerts, nil
}

// getData decodes the data of the answer to GET path into v.
func (p *Prometheus) getData(path string, v any) error {
	r, err := p.get(path, nil)
	if err != nil {
		return err
	}
	return json.Unmarshal(r.Data, v)
}
