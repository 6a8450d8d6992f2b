package diff

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

var t0 = time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)

// scenario is one testdata/*.json file: a policy and a sequence of scans.
type scenario struct {
	Policy Policy `json:"policy"`
	// FlapWindow sets Policy.FlapWindow in Go syntax ("30m"); scans are
	// 10 minutes apart.
	FlapWindow string `json:"flap_window"`
	Steps      []step `json:"steps"`
}

// step is one scan. Hosts map an address to port descriptions
// "PORT[/NAME[/PRODUCT[/VERSION[/CERT]]]][~]" (~: the detection ran out
// of time) or a range "LO-HI" of bare open
// ports. Confirm is how the re-probes answer: "truth" (default: as the scan
// says), "refuse" (the opposite) or "none" (skip Confirm, drop pending).
type step struct {
	Incomplete bool                `json:"incomplete"`
	Hosts      map[string][]string `json:"hosts"`
	Down       []string            `json:"down"`
	Confirm    string              `json:"confirm"`
	// LoseState restarts the diff without state (a daemon that lost it).
	LoseState bool `json:"lose_state"`
}

func buildSnapshot(t testing.TB, i int, s step) *snapshot.Snapshot {
	t.Helper()
	at := t0.Add(time.Duration(i) * 10 * time.Minute)
	sn := &snapshot.Snapshot{Target: "dmz", ID: snapshot.NewID("dmz", at), StartedAt: at, FinishedAt: at.Add(time.Second),
		Complete: !s.Incomplete, Quality: snapshot.Quality{ProbesSent: 1000, Replies: 1000}}
	for addr, descs := range s.Hosts {
		h := snapshot.Host{Address: addr, State: snapshot.HostUp}
		for _, d := range descs {
			if lo, hi, ok := strings.Cut(d, "-"); ok && !strings.Contains(d, "/") {
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				require.NoError(t, err1)
				require.NoError(t, err2)
				for p := a; p <= b; p++ {
					h.Ports = append(h.Ports, snapshot.Port{Port: uint16(p), Protocol: "tcp", State: snapshot.StateOpen})
				}
				continue
			}
			// A trailing "~" marks a detection that ran out of time.
			d, incomplete := strings.CutSuffix(d, "~")
			f := strings.Split(d, "/")
			n, err := strconv.Atoi(f[0])
			require.NoError(t, err, d)
			pt := snapshot.Port{Port: uint16(n), Protocol: "tcp", State: snapshot.StateOpen}
			if len(f) > 1 {
				pt.Service = &snapshot.Service{Name: f[1]}
				if len(f) > 2 {
					pt.Service.Product = f[2]
				}
				if len(f) > 3 {
					pt.Service.Version = f[3]
				}
				if len(f) > 4 {
					pt.Service.Cert = &snapshot.Cert{Fingerprint: f[4]}
				}
				pt.Service.Incomplete = incomplete
			}
			h.Ports = append(h.Ports, pt)
		}
		sn.Hosts = append(sn.Hosts, h)
	}
	for _, addr := range s.Down {
		sn.Hosts = append(sn.Hosts, snapshot.Host{Address: addr, State: snapshot.HostDown})
	}
	sn.Sort()
	return sn
}

// truthProber answers from a snapshot, or the opposite of it.
func truthProber(sn *snapshot.Snapshot, invert bool) Prober {
	return ProberFunc(func(_ context.Context, _ string, pairs []spec.Pair) (map[spec.Pair]string, error) {
		out := map[spec.Pair]string{}
		for _, p := range pairs {
			open := false
			for _, h := range sn.Hosts {
				if h.Address != p.Addr.String() || h.State != snapshot.HostUp {
					continue
				}
				for _, pt := range h.Ports {
					open = open || (pt.Port == p.Port && pt.State == snapshot.StateOpen)
				}
			}
			if open != invert {
				out[p] = snapshot.StateOpen
			} else {
				out[p] = snapshot.StateClosed
			}
		}
		return out, nil
	})
}

func formatChange(c snapshot.Change) string {
	var b strings.Builder
	b.WriteString(string(c.Kind))
	if c.Address != "" {
		b.WriteString(" " + c.Address)
	}
	if c.Port != 0 {
		fmt.Fprintf(&b, " %d/%s", c.Port, c.Protocol)
	}
	port := func(name string, p *snapshot.Port) {
		if p == nil {
			return
		}
		fmt.Fprintf(&b, " %s=%s", name, p.State)
		if s := p.Service; s != nil {
			fmt.Fprintf(&b, "(%s/%s/%s", s.Name, s.Product, s.Version)
			if s.Cert != nil {
				fmt.Fprintf(&b, "/%s", s.Cert.Fingerprint)
			}
			b.WriteString(")")
		}
	}
	port("before", c.Before)
	port("after", c.After)
	if c.Flaps != 0 {
		fmt.Fprintf(&b, " flaps=%d", c.Flaps)
	}
	if c.Detail != "" {
		fmt.Fprintf(&b, " %q", c.Detail)
	}
	return b.String()
}

func runScenario(t *testing.T, sc scenario) string {
	var out strings.Builder
	var prev *snapshot.Snapshot
	var st *State
	for i, s := range sc.Steps {
		cur := buildSnapshot(t, i+1, s)
		if s.LoseState {
			st = nil
		}
		res := Diff(prev, cur, st, sc.Policy)
		kind := "complete"
		if s.Incomplete {
			kind = "incomplete"
		}
		fmt.Fprintf(&out, "step %d %s\n", i+1, kind)
		for _, c := range res.Changes {
			require.Equal(t, "dmz", c.Target)
			require.Equal(t, cur.ID, c.Snapshot)
			require.Equal(t, cur.StartedAt, c.At)
			fmt.Fprintf(&out, "  %s\n", formatChange(c))
		}
		for _, p := range res.Pending {
			fmt.Fprintf(&out, "  pending %s\n", formatChange(p.Change))
		}
		var confirmed []snapshot.Change
		var err error
		switch s.Confirm {
		case "", "truth":
			confirmed, err = Confirm(context.Background(), truthProber(cur, false), res.Pending, 2, 3)
		case "refuse":
			confirmed, err = Confirm(context.Background(), truthProber(cur, true), res.Pending, 2, 3)
		case "none":
		default:
			t.Fatalf("step %d: confirm %q", i+1, s.Confirm)
		}
		require.NoError(t, err)
		for _, c := range confirmed {
			require.Equal(t, cur.ID, c.Snapshot)
			fmt.Fprintf(&out, "  confirmed %s\n", formatChange(c))
		}
		// The state survives serialisation.
		b, err := res.State.MarshalBinary()
		require.NoError(t, err)
		st, err = UnmarshalState(b)
		require.NoError(t, err)
		if cur.Complete {
			prev = cur
		}
	}
	return out.String()
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			var sc scenario
			dec := json.NewDecoder(strings.NewReader(string(data)))
			dec.DisallowUnknownFields()
			require.NoError(t, dec.Decode(&sc))
			if sc.FlapWindow != "" {
				sc.Policy.FlapWindow, err = time.ParseDuration(sc.FlapWindow)
				require.NoError(t, err)
			}
			got := runScenario(t, sc)
			golden := strings.TrimSuffix(f, ".json") + ".golden"
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test ./diff -run TestGolden -update")
			require.Equal(t, string(want), got)
		})
	}
}
