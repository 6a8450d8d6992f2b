package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/scanner/spec"
)

// badConfigs maps every file of testdata/bad to the exact text of the error
// Parse("exposure.yml", file) returns: all errors, in line order.
var badConfigs = map[string]string{
	"all_open_share.yml":        `exposure.yml:2: global.all_open_share: "1.5": must be greater than 0 and at most 1`,
	"auth_both.yml":             `exposure.yml:9: receivers[0].alertmanager.bearer_token_file: set basic_auth or bearer_token_file, not both`,
	"bad_cidr.yml":              `exposure.yml:5: targets[0].hosts[1]: "198.18.1.0/33": invalid CIDR prefix`,
	"bad_cron.yml":              `exposure.yml:4: targets[0].schedule: "*/15 * * *": expected exactly 5 fields, found 4`,
	"bad_cron_tz.yml":           `exposure.yml:4: targets[0].schedule: "CRON_TZ=Mars/Olympus_Mons 0 6 * * *": provided bad location Mars/Olympus_Mons: unknown time zone Mars/Olympus_Mons`,
	"bad_duration.yml":          `exposure.yml:2: global.retention: "90x": not a duration (examples: 30s, 15m, 1h30m, 90d)`,
	"bad_exclude.yml":           `exposure.yml:4: targets[0].exclude[0]: "198.18.0.300": invalid IP address`,
	"bad_hostname.yml":          `exposure.yml:3: targets[0].hosts[1]: "bad_host.example.test": invalid hostname`,
	"bad_ipv6.yml":              `exposure.yml:3: targets[0].hosts[1]: "2001:2::zz": invalid IP address`,
	"bad_label_name.yml":        `exposure.yml:6: targets[0].labels.1team: invalid label name (letters, digits and '_', not starting with a digit)`,
	"bad_port_spec_default.yml": `exposure.yml:2: defaults.ports: "top:5000": top:N needs N in 1-1000`,
	"bad_url_scheme.yml":        `exposure.yml:7: receivers[0].alertmanager.url: "ftp://127.0.0.1:9093": URL scheme must be http or https`,
	"basic_auth.yml": `exposure.yml:8: receivers[0].alertmanager.basic_auth.password_file: password_file is required (passwords are never written in the config)
exposure.yml:10: receivers[0].alertmanager.basic_auth.password: unknown field`,
	"confirm.yml":             `exposure.yml:2: global.confirm.n: "3": must be between 1 and confirm.m (2)`,
	"cron_never_fires.yml":    `exposure.yml:4: targets[0].schedule: "0 0 30 2 *": never fires`,
	"dash_range_reversed.yml": `exposure.yml:3: targets[0].hosts[0]: "198.18.0.20-1": range end before start`,
	"duplicate_key.yml":       `exposure.yml:6: targets[0].ports: duplicate field (first set at line 4)`,
	"duplicate_receiver.yml":  `exposure.yml:7: receivers[1].name: "out": duplicate receiver name (first used by receivers[0])`,
	"duplicate_target.yml":    `exposure.yml:6: targets[2].name: "web": duplicate target name (first used by targets[0])`,
	"empty.yml":               `exposure.yml: targets: at least one target is required`,
	"engine.yml":              `exposure.yml:4: targets[0].engine: "raw": must be one of syn, connect, auto`,
	"expect_not_scanned.yml":  `exposure.yml:6: targets[0].expect.open[1]: "8443": not scanned: outside the target's ports "1-1024"`,
	"expect_overlap.yml":      `exposure.yml:6: targets[0].expect.never_open[1]: "80": also listed in expect.open`,
	"expect_port_range.yml":   `exposure.yml:5: targets[0].expect.never_open[1]: "70000": port out of range 1-65535`,
	"intensity.yml":           `exposure.yml:3: defaults.service_detection.intensity: "12": must be between 0 and 9`,
	"many_errors.yml": `exposure.yml:3: global.scan_rate: "0": must be at least 1
exposure.yml:4: global.jitter: "soon": not a duration (examples: 30s, 15m, 1h30m, 90d)
exposure.yml:6: defaults.retries: "11": must be between 0 and 10
exposure.yml:9: targets[0].hosts[1]: "198.18.0.0/40": invalid CIDR prefix
exposure.yml:10: targets[0].ports: "22,,80": empty list element
exposure.yml:11: targets[0].schedule: "@fortnightly": unrecognized descriptor: @fortnightly
exposure.yml:13: targets[0].expect.versions.80: "~ 1.2": version rule must start with an operator: >=, >, <=, <, = or !=
exposure.yml:14: targets[1].name: "web": duplicate target name (first used by targets[0])
exposure.yml:15: targets[1].hosts: at least one host is required
exposure.yml:18: receivers[0].alertmanager: url or urls is required
exposure.yml:19: receivers[0].route.targets[0]: "nope": no target with this name`,
	"merge_key.yml": `exposure.yml:1: base: unknown field
exposure.yml:4: targets[0].hosts: at least one host is required
exposure.yml:5: targets[0].<<: merge keys (<<) are not supported`,
	"min_severity.yml":  `exposure.yml:8: receivers[0].route.min_severity: "high": must be one of info, warning, critical`,
	"missing_hosts.yml": `exposure.yml:2: targets[0].hosts: at least one host is required`,
	"missing_name.yml": `exposure.yml:2: targets[0].name: target name is required
exposure.yml:3: targets[1].name: "web/1": must start with a letter or digit and contain only letters, digits, '.', '_' and '-'`,
	"port_range_reversed.yml":  `exposure.yml:14: targets[2].ports: "80-70": range end before start`,
	"receiver_no_kind.yml":     `exposure.yml:5: receivers[0]: one of alertmanager, webhook or log is required`,
	"receiver_two_kinds.yml":   `exposure.yml:5: receivers[0]: only one of alertmanager, webhook and log may be set, found alertmanager and webhook`,
	"reserved_label.yml":       `exposure.yml:4: targets[0].labels.severity: reserved label name (set by exposure)`,
	"route_kind.yml":           `exposure.yml:8: receivers[0].route.kinds[1]: "port_open": must be one of host_up, host_down, port_opened, port_closed, service_changed, version_changed, cert_changed, all_ports_open, unexpected_open, forbidden_open, expected_missing, version_policy, scan_failing`,
	"route_unknown_target.yml": `exposure.yml:8: receivers[0].route.targets[1]: "dmz": no target with this name`,
	"shard_index.yml":          `exposure.yml:2: global.shard.index: "3": must be at least 0 and less than shard.total (3)`,
	"too_large.yml":            `exposure.yml:3: targets[0].hosts: 16,711,680 addresses, more than 65,536: set allow_large: true if this is intended`,
	"udp_connect.yml":          `exposure.yml:5: targets[0].ports: "22,U:53": UDP ports need raw sockets: engine connect scans TCP only (use engine syn or auto)`,
	"udp_expect_bad_port.yml": `exposure.yml:6: targets[0].expect.never_open[0]: "U:70000": port out of range 1-65535
exposure.yml:6: targets[0].expect.never_open[1]: "X:161": not a port (examples: 22, T:22, U:161, 161/udp)
exposure.yml:6: targets[0].expect.never_open[2]: "161/sctp": not a port (examples: 22, T:22, U:161, 161/udp)
exposure.yml:7: targets[0].expect.versions.U:0: "U:0": port out of range 1-65535`,
	"udp_expect_not_scanned.yml": `exposure.yml:6: targets[0].expect.never_open[0]: "U:161": not scanned: outside the target's ports "22,U:53"
exposure.yml:6: targets[0].expect.never_open[1]: "23": not scanned: outside the target's ports "22,U:53"
exposure.yml:7: targets[0].expect.open[0]: "53": not scanned: outside the target's ports "22,U:53" (a bare number is TCP: write U:53 for the UDP port)`,
	"udp_expect_overlap.yml": `exposure.yml:7: targets[0].expect.never_open[1]: "U:53": also listed in expect.open
exposure.yml:7: targets[0].expect.never_open[2]: "U:161": listed twice`,
	"udp_port_spec.yml": `exposure.yml:2: defaults.ports: "udp-top:5000": udp-top:N needs N in 1-1000
exposure.yml:6: targets[0].ports: "U:": empty list element`,
	"unknown_field.yml":        `exposure.yml:5: targets[0].portz: unknown field, did you mean "ports"?`,
	"unknown_receiver_ref.yml": `exposure.yml:4: targets[0].receivers[1]: "pager": no receiver with this name`,
	"unknown_top_level.yml":    `exposure.yml:3: scanrate: unknown field`,
	"url_and_urls.yml":         `exposure.yml:8: receivers[0].alertmanager.urls: set url or urls, not both`,
	"url_credentials.yml":      `exposure.yml:9: receivers[0].alertmanager.urls[1]: "http://admin:xxxxx@127.0.0.1:9094": credentials in the URL are not allowed: use basic_auth with password_file`,
	"url_no_host.yml":          `exposure.yml:7: receivers[0].webhook.url: "https:///x": URL has no host`,
	"version_bad_operator.yml": `exposure.yml:7: targets[0].expect.versions.22: "=> 9.0": one operator and one version per term (separate terms with commas)`,
	"version_no_operator.yml":  `exposure.yml:6: targets[0].expect.versions.22: "9.0": version rule must start with an operator: >=, >, <=, <, = or !=`,
	"version_no_version.yml":   `exposure.yml:7: targets[0].expect.versions.22: ">=": no version after ">="`,
	"wrong_type_bool.yml":      `exposure.yml:2: global.run_at_start: "yes": expected true or false`,
	"wrong_type_int.yml":       `exposure.yml:2: defaults.retries: "three": expected an integer`,
	"wrong_type_list.yml":      `exposure.yml:3: targets[0].hosts: expected a list, got a scalar`,
	"yaml_syntax.yml":          `exposure.yml:3: invalid YAML: did not find expected ',' or ']'`,
	"zero_timeout.yml":         `exposure.yml:2: defaults.timeout: "0s": must be longer than 0s`,
}

func TestBadConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yml")
	require.NoError(t, err)
	require.Len(t, files, len(badConfigs), "every file in testdata/bad needs an expected message, and every message a file")
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.TrimSuffix(name, ".yml"), func(t *testing.T) {
			want, ok := badConfigs[name]
			require.True(t, ok, "no expected message for %s", name)
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			c, err := Parse("exposure.yml", data)
			require.Nil(t, c)
			require.Error(t, err)
			require.Equal(t, want, err.Error())

			var errs Errors
			require.True(t, errors.As(err, &errs))
			require.Len(t, errs, strings.Count(want, "\n")+1)
			var one *Error
			require.True(t, errors.As(err, &one))
			require.Equal(t, "exposure.yml", one.File)
			require.NotEmpty(t, one.Reason)
		})
	}
}

func TestLoadNamesThePath(t *testing.T) {
	_, err := Load("testdata/bad/port_range_reversed.yml")
	require.EqualError(t, err, `testdata/bad/port_range_reversed.yml:14: targets[2].ports: "80-70": range end before start`)

	_, err = Load(filepath.Join(t.TempDir(), "missing.yml"))
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.ErrorContains(t, err, "read config: ")
}

func TestSecretsStayOutOfErrors(t *testing.T) {
	data, err := os.ReadFile("testdata/bad/url_credentials.yml")
	require.NoError(t, err)
	_, err = Parse("x.yml", data)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")
}

func TestGoodConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*.yml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 5)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yml"), func(t *testing.T) {
			c, err := Load(f)
			require.NoError(t, err)
			require.Equal(t, f, c.File())
			require.NotEmpty(t, c.Targets)
			for _, tg := range c.Targets {
				require.NotNil(t, tg.TargetSpec, tg.Name)
				require.NotNil(t, tg.Sched, tg.Name)
				require.Positive(t, tg.PortSpec.Len(), tg.Name)
				require.Positive(t, tg.Timeout, tg.Name)
			}
			// The rendered configuration is itself valid and stable.
			out := c.String()
			again, err := Parse("rendered.yml", []byte(out))
			require.NoError(t, err, out)
			require.Equal(t, out, again.String())
		})
	}
}

func TestDesignExample(t *testing.T) {
	c, err := Load("testdata/good/design.yml")
	require.NoError(t, err)

	require.Equal(t, 20000, c.Global.ScanRate)
	require.Equal(t, 90*24*time.Hour, time.Duration(c.Global.Retention))
	require.Equal(t, 30*time.Second, time.Duration(c.Global.Jitter))

	require.Len(t, c.Targets, 1)
	dmz := c.Target("dmz")
	require.NotNil(t, dmz)
	require.Equal(t, []string{"198.18.0.0/28", "mail.example.test"}, dmz.Hosts)
	require.Equal(t, []string{"198.18.0.5"}, dmz.Exclude)
	require.Equal(t, "1-65535", dmz.Ports)
	require.Equal(t, 65535, dmz.PortSpec.Len())
	require.Equal(t, uint64(16-1+1), dmz.TargetSpec.StaticCount()) // /28 minus one, plus the hostname
	require.Equal(t, map[string]string{"env": "prod", "team": "net"}, dmz.Labels)
	require.Equal(t, []spec.ProtoPort{spec.TCP(22), spec.TCP(80), spec.TCP(443)}, dmz.Expect.Open)
	require.True(t, dmz.Expect.OpenSet)
	require.Equal(t, []spec.ProtoPort{spec.TCP(23), spec.TCP(445), spec.TCP(3389)}, dmz.Expect.NeverOpen)
	require.Equal(t, map[spec.ProtoPort]string{spec.TCP(22): ">= 9.0"}, dmz.Expect.Versions)
	// Inherited from defaults.
	require.Equal(t, 2, dmz.Retries)
	require.Equal(t, ServiceDetection{Enabled: true, Intensity: 7, Timeout: model.Duration(5 * time.Second), Refresh: DefaultSVRefresh}, dmz.ServiceDetection)
	require.Equal(t, DefaultScanTimeout, dmz.Timeout)
	require.Equal(t, "auto", dmz.Engine)

	from := time.Date(2026, 11, 25, 6, 1, 0, 0, time.UTC)
	require.Equal(t, time.Date(2026, 11, 25, 6, 30, 0, 0, time.UTC), dmz.Sched.Next(from))

	require.Len(t, c.Receivers, 2)
	am := c.Receiver("am")
	require.Equal(t, "alertmanager", am.Type())
	require.Equal(t, []string{"http://127.0.0.1:9093"}, am.Alertmanager.Endpoints())
	require.Equal(t, DefaultReceiverTimeout, am.Alertmanager.Timeout)
	require.Equal(t, DefaultEventLifetime, am.EventLifetime)
	require.Equal(t, "info", am.Route.MinSeverity)
	hook := c.Receiver("hook")
	require.Equal(t, "webhook", hook.Type())
	require.Equal(t, "/etc/exposure/hook.secret", hook.Webhook.SecretFile)
	require.Nil(t, c.Receiver("nope"))
	require.Nil(t, c.Target("nope"))
}

func TestFullConfig(t *testing.T) {
	c, err := Load("testdata/good/full.yml")
	require.NoError(t, err)
	g := c.Global
	require.Equal(t, Global{
		ScanRate: 5000, Retention: model.Duration(30 * 24 * time.Hour), Jitter: model.Duration(time.Minute),
		MaxConcurrentScans: 2, RunAtStart: true, SeriesBudget: 500, Shard: Shard{Index: 1, Total: 2},
		AllOpenShare: 0.75, Confirm: Confirm{N: 3, M: 4}, Flap: Flap{Window: model.Duration(6 * time.Hour), Threshold: 5},
	}, g)

	dmz := c.Target("dmz")
	require.Equal(t, 65535, dmz.PortSpec.Len())
	require.Equal(t, 3, dmz.Retries)
	require.Equal(t, "syn", dmz.Engine)
	require.True(t, dmz.ReverseDNS)
	// service_detection is merged field by field: only enabled is overridden.
	require.Equal(t, ServiceDetection{Enabled: false, Intensity: 5, Timeout: model.Duration(3 * time.Second), Refresh: DefaultSVRefresh,
		ProbeFiles: []string{"/etc/exposure/extra-probes"}}, dmz.ServiceDetection)
	require.Equal(t, []string{"am", "hook"}, dmz.Receivers)
	require.Equal(t, map[spec.ProtoPort]string{spec.TCP(22): ">= 9.0", spec.TCP(443): "!= 1.18.0", spec.TCP(80): "< 2.4"}, dmz.Expect.Versions)

	lab := c.Target("lab.internal_2")
	require.True(t, lab.AllowLarge)
	require.Equal(t, uint64(131072), lab.TargetSpec.StaticCount())
	require.True(t, lab.Expect.OpenSet, "open: [] means nothing may be open")
	require.Empty(t, lab.Expect.Open)
	require.Equal(t, "top:100,8080-8090", lab.Ports)
	require.Equal(t, 109, lab.PortSpec.Len()) // 8080 and 8081 are among the top 100
	require.Equal(t, 1, lab.Retries)
	require.False(t, lab.ReverseDNS)
	require.Equal(t, "connect", lab.Engine)
	require.Equal(t, model.Duration(20*time.Minute), lab.Timeout)
	require.Equal(t, "CRON_TZ=UTC 0 * * * *", lab.Schedule)

	am := c.Receiver("am")
	require.Equal(t, []string{"http://127.0.0.1:9093", "http://[::1]:9094/"}, am.Alertmanager.Endpoints())
	require.Equal(t, &BasicAuth{Username: "exposure", PasswordFile: "/etc/exposure/am.password"}, am.Alertmanager.BasicAuth)
	require.Equal(t, model.Duration(5*time.Second), am.Alertmanager.Timeout)
	require.Equal(t, Route{Kinds: []string{"forbidden_open", "unexpected_open", "scan_failing"}, MinSeverity: "warning"}, am.Route)
	require.Equal(t, model.Duration(30*time.Minute), am.EventLifetime)
	require.Equal(t, Route{Targets: []string{"dmz"}, MinSeverity: "critical"}, c.Receiver("hook").Route)
	require.Equal(t, "/etc/exposure/am.token", c.Receiver("bearer").Alertmanager.BearerTokenFile)
	require.Equal(t, "log", c.Receiver("log").Type(), "a bare log: key is an empty log block")
}

func TestBuiltinDefaults(t *testing.T) {
	c, err := Load("testdata/good/minimal.yml")
	require.NoError(t, err)
	require.Equal(t, Global{
		ScanRate: 20000, Retention: DefaultRetention, Jitter: DefaultJitter, MaxConcurrentScans: 4,
		SeriesBudget: 10000, Shard: Shard{Index: 0, Total: 1}, AllOpenShare: 0.9,
		Confirm: Confirm{N: 2, M: 3}, Flap: Flap{Window: DefaultFlapWindow, Threshold: 4},
	}, c.Global)
	web := c.Targets[0]
	require.Equal(t, "top:1000", web.Ports)
	require.Equal(t, 1000, web.PortSpec.Len())
	require.Equal(t, "@every 15m", web.Schedule)
	require.Equal(t, 2, web.Retries)
	require.Equal(t, model.Duration(10*time.Minute), web.Timeout)
	require.Equal(t, ServiceDetection{Enabled: true, Intensity: 7, Timeout: model.Duration(5 * time.Second), Refresh: DefaultSVRefresh}, web.ServiceDetection)
	require.False(t, web.Expect.OpenSet)
	require.Empty(t, c.Receivers)
}

func TestExplicitZeroIsNotDefault(t *testing.T) {
	c, err := Parse("x.yml", []byte(`
global: {series_budget: 0, confirm: {m: 0}}
defaults: {retries: 3}
targets:
  - {name: a, hosts: [127.0.0.1], retries: 0, service_detection: {intensity: 0}}
  - {name: b, hosts: [127.0.0.1], retries: ~}
`))
	require.NoError(t, err)
	require.Equal(t, 0, c.Global.SeriesBudget)
	require.Equal(t, Confirm{N: 0, M: 0}, c.Global.Confirm, "m: 0 turns confirmation off")
	require.Equal(t, 0, c.Targets[0].Retries)
	require.Equal(t, 0, c.Targets[0].ServiceDetection.Intensity)
	require.Equal(t, 3, c.Targets[1].Retries, "null keeps the default")
}

func TestDefault(t *testing.T) {
	c := Default()
	require.Equal(t, DefaultFile, c.File())
	require.Len(t, c.Targets, 1)
	lh := c.Targets[0]
	require.Equal(t, "localhost", lh.Name)
	require.Equal(t, []string{"127.0.0.1"}, lh.Hosts)
	require.Equal(t, uint64(1), lh.TargetSpec.StaticCount())
	require.Equal(t, 1000, lh.PortSpec.Len())
	from := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	require.Equal(t, from.Add(15*time.Minute), lh.Sched.Next(from))
	require.True(t, c.Global.RunAtStart)
	require.Equal(t, "log", c.Receivers[0].Type())
	require.Contains(t, string(DefaultYAML()), "top:1000")
	// Each call returns a fresh value: callers may modify theirs.
	c.Targets[0].Name = "changed"
	require.Equal(t, "localhost", Default().Targets[0].Name)
}

func TestCronParser(t *testing.T) {
	p := NewCronParser()
	from := time.Date(2026, 11, 25, 6, 1, 0, 0, time.UTC)
	for spec, next := range map[string]time.Time{
		"*/15 * * * *":           time.Date(2026, 11, 25, 6, 15, 0, 0, time.UTC),
		"@every 10m":             from.Add(10 * time.Minute),
		"@hourly":                time.Date(2026, 11, 25, 7, 0, 0, 0, time.UTC),
		"CRON_TZ=UTC 30 6 * * *": time.Date(2026, 11, 25, 6, 30, 0, 0, time.UTC),
	} {
		s, err := p.Parse(spec)
		require.NoError(t, err, spec)
		require.Equal(t, next, s.Next(from).UTC(), spec)
	}
	_, err := p.Parse("0 */15 * * * *") // seconds field: not the daemon's syntax
	require.Error(t, err)

	for spec, reason := range map[string]string{
		"":                "schedule is required",
		"CRON_TZ=UTC":     "time zone must be followed by a space and a schedule", // crashes cron.Parser.Parse
		"TZ=0":            "time zone must be followed by a space and a schedule",
		"@every 500ms":    "@every interval must be at least 1s",
		"@every -5m":      "@every interval must be at least 1s",
		"@every 1d":       `failed to parse duration @every 1d: time: unknown unit "d" in duration "1d"`,
		"0 0 31 4 *":      "never fires",
		"61 * * * *":      "end of range (61) above maximum (59): 61",
		"0 */15 * * * *":  "expected exactly 5 fields, found 6",
		"CRON_TZ=X/Y 0 6": "provided bad location X/Y: unknown time zone X/Y",
	} {
		_, err := ParseSchedule(spec)
		require.EqualError(t, err, reason, spec)
	}
	s, err := ParseSchedule("@every 1s")
	require.NoError(t, err)
	require.Equal(t, from.Add(time.Second), s.Next(from))
}

func TestShardsCoverEveryTargetOnce(t *testing.T) {
	names := make([]string, 200)
	for i := range names {
		names[i] = "target-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + time.Duration(i).String()
	}
	for total := 1; total <= 6; total++ {
		owners := make([]int, total)
		for _, n := range names {
			count := 0
			for i := range total {
				if (Shard{Index: i, Total: total}).Owns(n) {
					count++
					owners[i]++
				}
			}
			require.Equal(t, 1, count, "%s with %d shards", n, total)
		}
		if total > 1 {
			for i, o := range owners {
				require.Positive(t, o, "shard %d/%d owns nothing", i, total)
			}
		}
	}
	require.True(t, Shard{}.Owns("anything"))

	c, err := Parse("x.yml", []byte("global: {shard: {index: 0, total: 2}}\ntargets:\n"+
		"  - {name: a, hosts: [127.0.0.1]}\n  - {name: b, hosts: [127.0.0.1]}\n  - {name: c, hosts: [127.0.0.1]}\n  - {name: d, hosts: [127.0.0.1]}\n"))
	require.NoError(t, err)
	c2, err := Parse("x.yml", []byte(strings.Replace(c.String(), "index: 0", "index: 1", 1)))
	require.NoError(t, err)
	got := map[string]int{}
	for _, cfg := range []*Config{c, c2} {
		for _, tg := range cfg.OwnedTargets() {
			got[tg.Name]++
		}
	}
	require.Equal(t, map[string]int{"a": 1, "b": 1, "c": 1, "d": 1}, got)
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "exposure.yml", Line: 14, Field: "targets[2].ports", Value: "80-70", Reason: "range end before start"},
			`exposure.yml:14: targets[2].ports: "80-70": range end before start`},
		{Error{File: "e.yml", Line: 3, Field: "targets[0].portz", Reason: "unknown field"}, `e.yml:3: targets[0].portz: unknown field`},
		{Error{File: "e.yml", Line: 2, Reason: "invalid YAML: x"}, `e.yml:2: invalid YAML: x`},
		{Error{File: "e.yml", Field: "targets", Reason: "at least one target is required"}, `e.yml: targets: at least one target is required`},
	} {
		require.Equal(t, tc.want, tc.e.Error())
	}
	es := Errors{{File: "a", Line: 1, Reason: "x"}, {File: "a", Line: 2, Reason: "y"}}
	require.Equal(t, "a:1: x\na:2: y", es.Error())
}

func TestDecoderEdgeCases(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"top level list", "- a\n", "x.yml:1: expected a mapping at the top level, got a list"},
		{"targets mapping", "targets: {name: a}\n", "x.yml:1: targets: expected a list, got a mapping"},
		{"target scalar", "targets: [a]\n", "x.yml:1: targets[0]: expected a mapping, got a scalar"},
		{"string list", "targets: [{name: a, hosts: [[127.0.0.1]]}]\n", "x.yml:1: targets[0].hosts[0]: expected a string, got a list"},
		{"float", "global: {all_open_share: lots}\ntargets: [{name: a, hosts: [127.0.0.1]}]\n", `x.yml:1: global.all_open_share: "lots": expected a number`},
		{"misspelt key", "targets:\n- name: a\n  hosts: [127.0.0.1]\n  port: '22'\n",
			`x.yml:4: targets[0].port: unknown field, did you mean "ports"?`},
		{"misspelt nested key", "global: {scanrate: 10}\ntargets: [{name: a, hosts: [127.0.0.1]}]\n",
			`x.yml:1: global.scanrate: unknown field, did you mean "scan_rate"?`},
		{"misspelt case", "targets: [{name: a, Hosts: [127.0.0.1]}]\n",
			"x.yml:1: targets[0].Hosts: unknown field, did you mean \"hosts\"?\nx.yml:1: targets[0].hosts: at least one host is required"},
		{"unknown key far from any", "targets: [{name: a, hosts: [127.0.0.1], colour: red}]\n",
			`x.yml:1: targets[0].colour: unknown field`},
		{"port key", "targets: [{name: a, hosts: [127.0.0.1], expect: {versions: {ssh: '>= 1'}}}]\n",
			`x.yml:1: targets[0].expect.versions.ssh: "ssh": not a port (examples: 22, T:22, U:161, 161/udp)`},
		{"duplicate port key", "targets:\n- name: a\n  hosts: [127.0.0.1]\n  expect:\n    versions:\n      22: '>= 1'\n      022: '>= 2'\n",
			"x.yml:7: targets[0].expect.versions.22: duplicate key (first set at line 6)"},
		{"duplicate label", "targets:\n- name: a\n  hosts: [127.0.0.1]\n  labels:\n    env: a\n    env: b\n",
			"x.yml:6: targets[0].labels.env: duplicate key (first set at line 5)"},
		{"mapping key", "targets:\n- name: a\n  hosts: [127.0.0.1]\n  ? [x]\n  : y\n", "x.yml:4: targets[0]: expected a field name, got a list"},
		{"empty label value", "targets: [{name: a, hosts: [127.0.0.1], labels: {env: ''}}]\n", "x.yml:1: targets[0].labels.env: empty label value"},
		{"empty host", "targets: [{name: a, hosts: ['']}]\n", `x.yml:1: targets[0].hosts[0]: empty target`},
		{"receiver listed twice", "targets: [{name: a, hosts: [127.0.0.1], receivers: [l, l]}]\nreceivers: [{name: l, log: {}}]\n",
			`x.yml:1: targets[0].receivers[1]: "l": listed twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yml", []byte(tc.yaml))
			require.EqualError(t, err, tc.want)
		})
	}
}

func TestAliasExpansionIsBounded(t *testing.T) {
	// 1,000 aliases of a target whose hosts are 1,100 aliases: over a
	// million nodes once expanded, from a few kilobytes of text. Decoding
	// stops at the budget, with one error.
	var b strings.Builder
	b.WriteString("targets:\n  - &t\n    name: a\n    hosts: &h [&s 127.0.0.1")
	for range 1100 {
		b.WriteString(", *s")
	}
	b.WriteString("]\n")
	for range 1000 {
		b.WriteString("  - *t\n")
	}
	_, err := Parse("x.yml", []byte(b.String()))
	require.Error(t, err)
	require.Regexp(t, `^x.yml:4: targets\[23\d\]\.hosts\[\d+\]: document too large or too many aliases \(more than 262144 nodes\)$`, err.Error())
}

func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/good", "testdata/bad"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.yml"))
		require.NoError(f, err)
		for _, file := range files[:min(len(files), 12)] {
			data, err := os.ReadFile(file)
			require.NoError(f, err)
			f.Add(data)
		}
	}
	f.Add([]byte("targets: [{name: a, hosts: [127.0.0.1], expect: {versions: {22: '>= 1'}}}]"))
	f.Add([]byte("targets: [{name: a, hosts: [127.0.0.1], ports: '22,U:53,161', expect: {open: [22, U:53], never_open: [161/udp], versions: {'U:53': '>= 9'}}}]"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yml", data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error is not Errors: %T %v", err, err)
			}
			for _, e := range errs {
				if e.Reason == "" || e.File != "f.yml" {
					t.Fatalf("incomplete error %#v", e)
				}
			}
			return
		}
		if len(c.Targets) == 0 {
			t.Fatal("valid config without targets")
		}
		// Whatever validates renders to something that validates again.
		if _, err := Parse("rendered.yml", []byte(c.String())); err != nil {
			t.Fatalf("rendered config does not parse: %v\n%s", err, c.String())
		}
	})
}

// TestUDPConfig: ports and the expect lists take nmap's protocol syntax;
// bare numbers are TCP, and the rendered configuration keeps the protocols.
func TestUDPConfig(t *testing.T) {
	c, err := Load("testdata/good/udp.yml")
	require.NoError(t, err)
	dns, inh := c.Targets[0], c.Targets[1]
	require.Equal(t, "22-23", dns.PortSpec.TCP.String())
	require.Equal(t, "53,69,123,137-138,161,631", dns.PortSpec.UDP.String())
	require.Equal(t, []spec.ProtoPort{spec.TCP(22), spec.UDP(53), spec.UDP(69)}, dns.Expect.Open)
	require.Equal(t, []spec.ProtoPort{spec.UDP(161), spec.TCP(23)}, dns.Expect.NeverOpen)
	require.Equal(t, map[spec.ProtoPort]string{spec.UDP(53): ">= 9.18", spec.TCP(22): ">= 9.0"}, dns.Expect.Versions)
	require.Equal(t, "22,80", inh.PortSpec.TCP.String(), "defaults.ports with protocols is inherited")
	require.Equal(t, "53,161", inh.PortSpec.UDP.String())

	out := c.String()
	require.Contains(t, out, "open: [22, 'U:53', 'U:69']")
	require.Contains(t, out, "never_open: ['U:161', 23]")
	require.Contains(t, out, "        22: '>= 9.0'\n        U:53: '>= 9.18'\n")
	again, err := Parse("rendered.yml", []byte(out))
	require.NoError(t, err, out)
	require.Equal(t, dns.Expect, again.Targets[0].Expect)
}
