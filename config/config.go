package config

import (
	"bytes"
	_ "embed"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/prometheus/common/model"
	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/exposure-monitor/exposure/scanner"
	"github.com/exposure-monitor/exposure/scanner/service"
	"github.com/exposure-monitor/exposure/scanner/spec"
)

//go:embed default.yml
var defaultYAML []byte

// DefaultFile is the name errors of the embedded default configuration carry.
const DefaultFile = "default.yml"

// Built-in values for every field that has one. doc.go lists them too.
const (
	DefaultScanRate           = 20000
	DefaultRetention          = model.Duration(90 * 24 * time.Hour)
	DefaultJitter             = model.Duration(30 * time.Second)
	DefaultMaxConcurrentScans = 4
	DefaultSeriesBudget       = 10000
	DefaultAllOpenShare       = 0.9
	DefaultConfirmN           = 2
	DefaultConfirmM           = 3
	DefaultFlapWindow         = model.Duration(time.Hour)
	DefaultFlapThreshold      = 4

	DefaultPorts       = "top:1000"
	DefaultSchedule    = "@every 15m"
	DefaultScanTimeout = model.Duration(10 * time.Minute)
	DefaultRetries     = 2
	DefaultEngine      = scanner.KindAuto
	DefaultIntensity   = service.DefaultIntensity // -sV's defaults are the detector's
	DefaultSVTimeout   = model.Duration(service.DefaultTimeout)
	// DefaultSVRefresh bounds how long a port whose cheap fingerprint (the
	// reply bytes that matched, or the TLS certificate) is unchanged keeps
	// its detection: a version that changes behind such a fingerprint is
	// found within a day. 0 detects every open port in full every scan.
	DefaultSVRefresh = model.Duration(24 * time.Hour)

	DefaultReceiverTimeout = model.Duration(10 * time.Second)
	DefaultEventLifetime   = model.Duration(time.Hour)
	DefaultMinSeverity     = "info"

	// MaxStaticAddresses is the largest target accepted without
	// allow_large: true (a /16).
	MaxStaticAddresses = 65536
)

// Config is one validated configuration file. Every field of every target
// is resolved (defaults applied, specs parsed), so consumers never look at
// Defaults to find a target's settings.
type Config struct {
	// Global settings of the whole daemon.
	Global Global `yaml:"global"`
	// Defaults apply to every target that does not override them.
	Defaults Scan `yaml:"defaults"`
	// Targets to scan; at least one.
	Targets []*Target `yaml:"targets"`
	// Receivers of alerts; optional.
	Receivers []*Receiver `yaml:"receivers,omitempty"`

	file string
}

// Global holds daemon-wide settings.
type Global struct {
	// ScanRate is the packet budget per second shared by all scans.
	ScanRate int `yaml:"scan_rate"`
	// Retention is how long snapshots and changes are kept (90d).
	Retention model.Duration `yaml:"retention"`
	// Jitter bounds a fixed per-target offset (a hash of the name) added to
	// every run, at most 95% of the schedule's interval: targets spread, periods kept.
	Jitter model.Duration `yaml:"jitter"`
	// MaxConcurrentScans caps the number of targets scanned at once.
	MaxConcurrentScans int `yaml:"max_concurrent_scans"`
	// RunAtStart scans every target once when the daemon starts, instead of
	// waiting for its first scheduled run.
	RunAtStart bool `yaml:"run_at_start"`
	// SeriesBudget caps the per-port series (exposure_port_open,
	// exposure_service_info) exported per scrape; 0 exports none.
	SeriesBudget int `yaml:"series_budget"`
	// Shard splits the targets between several daemons.
	Shard Shard `yaml:"shard"`
	// AllOpenShare is the share of scanned ports that, once open on one host,
	// is reported as one all_ports_open change (SYN proxy, tarpit) instead of
	// thousands of port_opened changes. In (0, 1].
	AllOpenShare float64 `yaml:"all_open_share"`
	// Confirm sets how pending changes are confirmed by re-probing.
	Confirm Confirm `yaml:"confirm"`
	// Flap sets when a port going open and closed repeatedly is folded into
	// one change.
	Flap Flap `yaml:"flap"`
	// Interface, if set, binds every socket of every scan (probes, service
	// detection, DNS) to this network interface, like nmap's -e: nothing a
	// scan sends can leave through another one, and a target not routed
	// through it is not probed. Empty (the default) binds nothing. The
	// interface need not exist at load time; a scan while it is missing
	// fails, naming it.
	Interface string `yaml:"interface"`
}

// Shard assigns targets to one of Total daemons by a stable hash of the
// target name (Prometheus' hashmod); see Owns.
type Shard struct {
	Index int `yaml:"index"`
	Total int `yaml:"total"`
}

// Confirm: a port_opened or port_closed change is reported only when N
// of up to M re-probe rounds of exactly that port agree with the new state
// (diff.Confirm's n and m). M = 0 turns confirmation off (N must then be 0).
type Confirm struct {
	N int `yaml:"n"`
	M int `yaml:"m"`
}

// Flap: when the reported state of a port changes for the Threshold-th
// time within Window, that change carries the count (Change.Flaps) and the
// port is held: further alternations are folded until it keeps one state
// for a whole Window, and reported then (with the count) only if that state
// differs from the last report (diff.Policy.FlapWindow, FlapThreshold).
type Flap struct {
	Window    model.Duration `yaml:"window"`
	Threshold int            `yaml:"threshold"`
}

// Scan holds the settings that defaults sets and each target may override,
// field by field (service_detection too).
type Scan struct {
	// Ports is the port spec: "22,80", "1-1024", "-", "top:1000",
	// "top:100,8080-8090"; UDP as nmap writes it: "T:22,U:53,161",
	// "udp-top:100" (bare numbers and top:N are TCP).
	Ports string `yaml:"ports"`
	// Schedule is a 5-field cron spec, optionally prefixed by CRON_TZ=Zone,
	// or a descriptor such as @hourly or @every 10m.
	Schedule string `yaml:"schedule"`
	// Timeout bounds one whole scan of a target; a scan cut short is stored
	// as incomplete.
	Timeout model.Duration `yaml:"timeout"`
	// Retries is the number of retransmissions of an unanswered probe.
	Retries int `yaml:"retries"`
	// Engine is syn (raw sockets, needs CAP_NET_RAW), connect, or auto (syn
	// when permitted, else connect).
	Engine string `yaml:"engine"`
	// ReverseDNS looks up PTR names of the addresses found up.
	ReverseDNS bool `yaml:"reverse_dns"`
	// ServiceDetection runs -sV style probes on open ports.
	ServiceDetection ServiceDetection `yaml:"service_detection"`

	// PortSpec is Ports parsed: the TCP and the UDP ports.
	PortSpec spec.PortSpec `yaml:"-"`
	// Sched is Schedule parsed by NewCronParser.
	Sched cron.Schedule `yaml:"-"`
}

// ServiceDetection configures service and version detection.
type ServiceDetection struct {
	Enabled bool `yaml:"enabled"`
	// Intensity 0-9 as nmap's --version-intensity: probes rarer than this
	// are not sent.
	Intensity int `yaml:"intensity"`
	// Timeout per port.
	Timeout model.Duration `yaml:"timeout"`
	// Refresh is the longest a port open in the previous complete scan
	// whose cheap fingerprint is unchanged keeps its detection before it
	// is detected in full again (spread over the scans of the period); 0
	// detects every open port in full every scan. A version changed behind
	// an unchanged fingerprint is found within Refresh.
	Refresh model.Duration `yaml:"refresh"`
	// ProbeFiles are extra nmap-service-probes files read in addition to
	// the embedded database.
	ProbeFiles []string `yaml:"probe_files,omitempty"`
}

// Target is one named set of hosts scanned together on one schedule.
type Target struct {
	// Name identifies the target in metrics, alerts and storage keys.
	Name string `yaml:"name"`
	// Hosts are IPv4/IPv6 addresses, CIDRs, dash ranges or hostnames
	// (resolved at every scan).
	Hosts []string `yaml:"hosts"`
	// Exclude is removed from Hosts after resolution (same syntax).
	Exclude []string `yaml:"exclude,omitempty"`
	// AllowLarge permits more than 65,536 addresses.
	AllowLarge bool `yaml:"allow_large,omitempty"`
	// Scan settings, each inherited from defaults unless set here.
	Scan `yaml:",inline"`
	// Labels are added to the target's alerts.
	Labels map[string]string `yaml:"labels,omitempty"`
	// Expect is the policy the target is checked against.
	Expect Expect `yaml:"expect,omitempty"`
	// Receivers, when set, restricts the target's alerts to these receivers
	// (their routes still apply). Empty: every receiver whose route matches.
	Receivers []string `yaml:"receivers,omitempty"`

	// TargetSpec is Hosts and Exclude parsed.
	TargetSpec *spec.Targets `yaml:"-"`
}

// Expect is a target's policy.
type Expect struct {
	// Open lists the ports that may be open; any other open port is an
	// unexpected_open verdict. Only applies when OpenSet. Entries are
	// written as in a port spec: 22 or T:22 (TCP), U:161 (UDP).
	Open []spec.ProtoPort `yaml:"open,omitempty"`
	// NeverOpen lists ports whose opening is a forbidden_open verdict
	// (a firewall regression), written as Open's.
	NeverOpen []spec.ProtoPort `yaml:"never_open,omitempty"`
	// Versions maps a port (22, U:53) to a rule such as ">= 9.0" its
	// service version must satisfy.
	Versions map[spec.ProtoPort]string `yaml:"versions,omitempty"`

	// OpenSet tells "open: []" (nothing may be open) from no open list.
	OpenSet bool `yaml:"-"`
}

// IsZero lets the marshaller omit an empty expect block.
func (e Expect) IsZero() bool {
	return !e.OpenSet && len(e.Open) == 0 && len(e.NeverOpen) == 0 && len(e.Versions) == 0
}

// MarshalYAML keeps "open: []" when the empty list was set explicitly.
func (e Expect) MarshalYAML() (any, error) {
	type plain struct {
		Open      *[]spec.ProtoPort `yaml:"open,omitempty,flow"`
		NeverOpen []spec.ProtoPort  `yaml:"never_open,omitempty,flow"`
		Versions  *yaml.Node        `yaml:"versions,omitempty"`
	}
	p := plain{NeverOpen: e.NeverOpen}
	if len(e.Versions) > 0 {
		// A mapping in port order: yaml sorts no struct keys.
		p.Versions = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for _, pp := range slices.SortedFunc(maps.Keys(e.Versions), spec.ProtoPort.Compare) {
			var k, v yaml.Node
			if err := k.Encode(pp); err != nil {
				return nil, err
			}
			if err := v.Encode(e.Versions[pp]); err != nil {
				return nil, err
			}
			p.Versions.Content = append(p.Versions.Content, &k, &v)
		}
	}
	if e.OpenSet || len(e.Open) > 0 {
		open := e.Open
		if open == nil {
			open = []spec.ProtoPort{}
		}
		p.Open = &open
	}
	return p, nil
}

// Receiver is one destination of alerts. Exactly one of Alertmanager,
// Webhook and Log is set.
type Receiver struct {
	Name         string        `yaml:"name"`
	Alertmanager *Alertmanager `yaml:"alertmanager,omitempty"`
	Webhook      *Webhook      `yaml:"webhook,omitempty"`
	Log          *Log          `yaml:"log,omitempty"`
	// Route filters what the receiver gets.
	Route Route `yaml:"route,omitempty"`
	// EventLifetime is how long event alerts (port opened or closed,
	// version changed) stay active in Alertmanager (their endsAt).
	EventLifetime model.Duration `yaml:"event_lifetime"`
}

// Type is the name of the one receiver kind set (ReceiverKinds), or "".
func (r *Receiver) Type() string {
	if k := r.kinds(); len(k) == 1 {
		return k[0]
	}
	return ""
}

// Alertmanager sends alerts to the v2 API of every listed instance (an HA
// cluster dedups them). Secrets are read from files at send time, never
// stored in the configuration.
type Alertmanager struct {
	// URL of one Alertmanager; or URLs for several. Not both.
	URL  string   `yaml:"url,omitempty"`
	URLs []string `yaml:"urls,omitempty"`
	// BasicAuth and BearerTokenFile are mutually exclusive.
	BasicAuth       *BasicAuth     `yaml:"basic_auth,omitempty"`
	BearerTokenFile string         `yaml:"bearer_token_file,omitempty"`
	Timeout         model.Duration `yaml:"timeout"`
}

// Endpoints returns URL or URLs, whichever is set.
func (a *Alertmanager) Endpoints() []string {
	if a.URL != "" {
		return []string{a.URL}
	}
	return a.URLs
}

// BasicAuth names the user and the file holding the password.
type BasicAuth struct {
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
}

// Webhook POSTs changes as JSON, signed with HMAC-SHA256 of the secret read
// from SecretFile.
type Webhook struct {
	URL        string         `yaml:"url"`
	SecretFile string         `yaml:"secret_file,omitempty"`
	Timeout    model.Duration `yaml:"timeout"`
}

// Log writes alerts to the daemon's log.
type Log struct{}

// Route filters a receiver's notifications. Empty lists match everything.
type Route struct {
	// Targets by name.
	Targets []string `yaml:"targets,omitempty"`
	// Kinds of change (snapshot.Kind values, plus scan_failing).
	Kinds []string `yaml:"kinds,omitempty"`
	// MinSeverity is info, warning or critical.
	MinSeverity string `yaml:"min_severity"`
}

// Load reads and validates the file at path. Errors are Errors, each naming
// path, line, field and value. Load does no I/O beyond reading path: files
// named inside the configuration (secrets, probe files) are read by their
// users.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates data; name is used in error messages.
func Parse(name string, data []byte) (*Config, error) {
	c := &Config{file: name}
	d := newDecoder(name)
	root, ok := d.parse(data)
	if ok {
		c.setBuiltins()
		d.decode(root, c, "")
		if !d.exhausted() {
			c.validate(d)
		}
	}
	if len(d.errs) > 0 {
		return nil, d.errs.sort()
	}
	return c, nil
}

// Default returns the embedded default configuration: target "localhost",
// 127.0.0.1, top:1000, every 15 minutes.
func Default() *Config {
	c, err := Parse(DefaultFile, defaultYAML)
	if err != nil { // guarded by TestDefault
		panic(fmt.Sprintf("embedded default config is invalid: %v", err))
	}
	return c
}

// DefaultYAML returns the text of the embedded default configuration.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// File is the path or name the configuration was loaded from.
func (c *Config) File() string { return c.file }

// Target returns the target called name, or nil.
func (c *Config) Target(name string) *Target {
	for _, t := range c.Targets {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Receiver returns the receiver called name, or nil.
func (c *Config) Receiver(name string) *Receiver {
	for _, r := range c.Receivers {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// String renders the resolved configuration as YAML (every target with its
// inherited settings). It holds no secrets: those live in files named by
// the configuration. Parsing the output yields an equal configuration.
func (c *Config) String() string {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return fmt.Sprintf("# cannot render configuration: %v\n", err)
	}
	_ = enc.Close()
	return b.String()
}

// setBuiltins fills the values used when the file leaves a field out.
func (c *Config) setBuiltins() {
	c.Global = Global{
		ScanRate:           DefaultScanRate,
		Retention:          DefaultRetention,
		Jitter:             DefaultJitter,
		MaxConcurrentScans: DefaultMaxConcurrentScans,
		SeriesBudget:       DefaultSeriesBudget,
		Shard:              Shard{Index: 0, Total: 1},
		AllOpenShare:       DefaultAllOpenShare,
		Confirm:            Confirm{N: DefaultConfirmN, M: DefaultConfirmM},
		Flap:               Flap{Window: DefaultFlapWindow, Threshold: DefaultFlapThreshold},
	}
	c.Defaults = Scan{
		Ports:      DefaultPorts,
		Schedule:   DefaultSchedule,
		Timeout:    DefaultScanTimeout,
		Retries:    DefaultRetries,
		Engine:     DefaultEngine,
		ReverseDNS: true,
		ServiceDetection: ServiceDetection{
			Enabled:   true,
			Intensity: DefaultIntensity,
			Timeout:   DefaultSVTimeout,
			Refresh:   DefaultSVRefresh,
		},
	}
}
