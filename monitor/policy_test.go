package monitor

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/snapshot"
)

// parseTarget parses a configuration with one target "t" and the given
// global section and target fields.
func parseTarget(t *testing.T, global, target string) (*config.Target, config.Global) {
	t.Helper()
	cfg, err := config.Parse("policy.yml", []byte(fmt.Sprintf(`global:
  jitter: 0s
%s
targets:
  - name: t
    hosts: [127.0.0.1]
    engine: connect
    reverse_dns: false
%s
`, global, target)))
	require.NoError(t, err)
	require.Len(t, cfg.Targets, 1)
	return cfg.Targets[0], cfg.Global
}

// loopbackSnapshot is a complete scan of 127.0.0.1 at offset i (10 s
// apart) with the given ports open.
func loopbackSnapshot(i int, probed int, open ...uint16) *snapshot.Snapshot {
	at := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC).Add(time.Duration(i) * 10 * time.Second)
	h := snapshot.Host{Address: "127.0.0.1", State: snapshot.HostUp}
	for _, p := range open {
		h.Ports = append(h.Ports, snapshot.Port{Port: p, Protocol: "tcp", State: snapshot.StateOpen})
	}
	s := &snapshot.Snapshot{Target: "t", ID: snapshot.NewID("t", at), StartedAt: at, FinishedAt: at.Add(time.Second),
		Complete: true, Hosts: []snapshot.Host{h},
		Quality: snapshot.Quality{ProbesSent: uint64(probed), Replies: uint64(probed)}}
	s.Sort()
	return s
}

// runDiffs diffs the snapshots in turn with the daemon's real differ (diff
// plus confirmation by connect re-probes of 127.0.0.1), carrying the state
// the way runScan stores it, and returns the changes of each scan.
func runDiffs(t *testing.T, tgt *config.Target, g config.Global, snaps ...*snapshot.Snapshot) [][]snapshot.Change {
	t.Helper()
	w := diffWithConfirm{engines: newEngineSet(rate.NewLimiter(1000, 100), discardLogger())}
	var prev *snapshot.Snapshot
	var state []byte
	var out [][]snapshot.Change
	for _, s := range snaps {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := w.diff(ctx, prev, s, state, tgt, g)
		cancel()
		require.NoError(t, err)
		out = append(out, res.Changes)
		prev, state = s, res.State
	}
	return out
}

func kinds(cs []snapshot.Change) []string {
	var out []string
	for _, c := range cs {
		k := string(c.Kind)
		if c.Port != 0 {
			k += ":" + strconv.Itoa(int(c.Port))
		}
		if c.Flaps != 0 {
			k += fmt.Sprintf(" flaps=%d", c.Flaps)
		}
		out = append(out, k)
	}
	return out
}

// closedLoopbackPort returns a port of 127.0.0.1 nobody listens on.
func closedLoopbackPort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	require.NoError(t, ln.Close())
	return port
}

// TestConfiguredFlapThreshold checks that global.flap reaches the diff: a
// port alternating every scan is held from the threshold-th change within
// the window, and not at all when the window is shorter than two scans.
func TestConfiguredFlapThreshold(t *testing.T) {
	tests := []struct {
		name string
		flap string
		want [][]string
	}{
		{"threshold 2", "flap: {window: 1h, threshold: 2}", [][]string{
			nil, {"port_opened:8080"}, {"port_closed:8080 flaps=2"}, nil, nil, nil,
		}},
		{"threshold 4 (default)", "", [][]string{
			nil, {"port_opened:8080"}, {"port_closed:8080"}, {"port_opened:8080"}, {"port_closed:8080 flaps=4"}, nil,
		}},
		{"window shorter than the scan interval", "flap: {window: 5s, threshold: 2}", [][]string{
			nil, {"port_opened:8080"}, {"port_closed:8080"}, {"port_opened:8080"}, {"port_closed:8080"}, {"port_opened:8080"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Confirmation off: the alternation is in the scans only.
			tgt, g := parseTarget(t, "  confirm: {m: 0}\n  "+tt.flap, `    ports: "8000-8100"`)
			var snaps []*snapshot.Snapshot
			for i := range 6 {
				if i%2 == 1 {
					snaps = append(snaps, loopbackSnapshot(i, 101, 22, 8080))
				} else {
					snaps = append(snaps, loopbackSnapshot(i, 101, 22))
				}
			}
			var got [][]string
			for _, cs := range runDiffs(t, tgt, g, snaps...) {
				got = append(got, kinds(cs))
			}
			require.Equal(t, tt.want, got)
		})
	}
}

// TestConfiguredConfirmAndAllOpenShare checks that global.confirm and
// global.all_open_share reach the diff: a scan that claims a port open
// which the connect re-probes find closed is reported only with
// confirmation off, and a host answering on 30 of 40 probed ports is one
// all_ports_open only when that is above the configured share.
func TestConfiguredConfirmAndAllOpenShare(t *testing.T) {
	ghost := closedLoopbackPort(t)
	ports := fmt.Sprintf("    ports: \"%d,9000-9039\"", ghost)
	t.Run("confirm", func(t *testing.T) {
		for _, tt := range []struct {
			confirm string
			want    []string
		}{
			{"confirm: {n: 2, m: 3}", nil},
			{"confirm: {n: 1, m: 1}", nil},
			{"confirm: {m: 0}", []string{fmt.Sprintf("port_opened:%d", ghost)}},
		} {
			t.Run(tt.confirm, func(t *testing.T) {
				tgt, g := parseTarget(t, "  "+tt.confirm, ports)
				res := runDiffs(t, tgt, g, loopbackSnapshot(0, 41), loopbackSnapshot(1, 41, ghost))
				require.Equal(t, tt.want, kinds(res[1]))
			})
		}
	})
	t.Run("all_open_share", func(t *testing.T) {
		var open []uint16
		for p := uint16(9000); p < 9030; p++ {
			open = append(open, p)
		}
		for _, tt := range []struct {
			share string
			want  []string
		}{
			{"0.5", []string{"all_ports_open"}},
			{"0.7", []string{"all_ports_open"}},
			{"0.8", nil},
			{"0.9", nil},
		} {
			t.Run(tt.share, func(t *testing.T) {
				tgt, g := parseTarget(t, "  all_open_share: "+tt.share, ports)
				require.Equal(t, 41, tgt.PortSpec.Len())
				res := runDiffs(t, tgt, g, loopbackSnapshot(0, 41, open...))
				require.Equal(t, tt.want, kinds(res[0]), "baseline with 30 of 41 ports open")
			})
		}
	})
}

// TestConfiguredServiceDetection checks that service_detection reaches the
// detector: intensity, timeout and probe files map onto its options, each
// distinct setting gets its own detector, and a probe file's match shows
// up in a real scan of a loopback banner service.
func TestConfiguredServiceDetection(t *testing.T) {
	probes := filepath.Join(t.TempDir(), "probes")
	require.NoError(t, os.WriteFile(probes, []byte("Probe TCP NULL q||\ntotalwaitms 2000\n"+
		`match fakesvc m|^FAKESVC ([\d.]+)\r\n| p/Fake service/ v/$1/`+"\n"), 0o600))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("FAKESVC 3.14\r\n"))
			time.Sleep(50 * time.Millisecond)
			_ = c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name          string
		sd            string
		wantIntensity int
		wantTimeout   time.Duration
		wantFiles     []string
		wantProduct   string
	}{
		{"defaults", "{enabled: true}", 7, 5 * time.Second, nil, ""},
		{"probe file", fmt.Sprintf("{enabled: true, intensity: 2, timeout: 3s, probe_files: [%q]}", probes), 2, 3 * time.Second, []string{probes}, "Fake service"},
		{"intensity 9", "{enabled: true, intensity: 9, timeout: 1500ms}", 9, 1500 * time.Millisecond, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tgt, g := parseTarget(t, "", fmt.Sprintf("    ports: \"%d\"\n    service_detection: %s", port, tt.sd))
			o := serviceOptions(tgt.ServiceDetection, discardLogger())
			require.Equal(t, tt.wantIntensity, o.Intensity)
			require.Equal(t, tt.wantTimeout, o.Timeout)
			if len(tt.wantFiles) == 0 {
				require.Empty(t, o.ProbeFiles)
			} else {
				require.Equal(t, tt.wantFiles, o.ProbeFiles)
			}
			if tt.wantProduct == "" {
				return
			}
			d := &daemonState{logger: discardLogger(), limiter: rate.NewLimiter(1000, 100)}
			cfg := &config.Config{Global: g, Targets: []*config.Target{tgt}}
			scan, _, err := d.realScanners(cfg)
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			snap, err := scan(ctx, tgt)
			require.NoError(t, err)
			require.True(t, snap.Complete)
			require.Len(t, snap.Hosts, 1)
			require.Len(t, snap.Hosts[0].Ports, 1)
			svc := snap.Hosts[0].Ports[0].Service
			require.NotNil(t, svc)
			require.Equal(t, tt.wantProduct, svc.Product)
			require.Equal(t, "3.14", svc.Version)
		})
	}

	// One detector per distinct setting, so a changed intensity is not
	// served by the old detector.
	d := &daemonState{logger: discardLogger(), limiter: rate.NewLimiter(1000, 100)}
	var targets []string
	for i, intensity := range []int{3, 3, 8} {
		targets = append(targets, fmt.Sprintf(`  - name: t%d
    hosts: [127.0.0.1]
    engine: connect
    service_detection: {enabled: true, intensity: %d}`, i, intensity))
	}
	cfg, err := config.Parse("many.yml", []byte("targets:\n"+strings.Join(targets, "\n")+"\n"))
	require.NoError(t, err)
	_, _, err = d.realScanners(cfg)
	require.NoError(t, err)
	require.Len(t, d.detectors, 2)
}
