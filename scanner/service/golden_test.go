package service

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestEmbeddedGolden summarises the embedded database (probes, their
// directives, the services they name) against testdata/embedded.golden, and
// checks that every pattern compiles and it covers at least 25 services.
func TestEmbeddedGolden(t *testing.T) {
	d, err := New(Options{Intensity: DefaultIntensity})
	require.NoError(t, err)
	require.Zero(t, d.CompileAll(), "every embedded pattern compiles")

	var b strings.Builder
	services := map[string]bool{}
	for _, p := range d.DB().Probes {
		var names []string
		for _, m := range p.Matches {
			if !slices.Contains(names, m.Service) {
				names = append(names, m.Service)
			}
			services[m.Service] = true
		}
		fmt.Fprintf(&b, "%s %s rarity=%d wait=%v payload=%dB matches=%d services=%s\n",
			p.Protocol, p.Name, p.Rarity, p.TotalWait, len(p.Payload), len(p.Matches), strings.Join(names, ","))
	}
	fmt.Fprintf(&b, "services: %d\n", len(services))
	require.GreaterOrEqual(t, len(services), 25)

	const golden = "testdata/embedded.golden"
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(b.String()), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run go test -run TestEmbeddedGolden -update")
	require.Equal(t, string(want), b.String())
}
