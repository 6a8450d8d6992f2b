// Package contrib_test checks the operations kit under contrib/ with the
// tools that consume it: the example configurations with config.Load and
// `exposure check-config`, the alerting rules with promtool, the Kubernetes
// manifests by decoding them and running their shard script, and the
// Grafana dashboard's queries against a real Prometheus that scraped a real
// daemon.
package contrib_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/internal/lab"
)

func TestExamplesLoad(t *testing.T) {
	for _, tc := range []struct {
		file  string
		check func(t *testing.T, c *config.Config)
	}{
		{"dmz.yml", func(t *testing.T, c *config.Config) {
			var forbidden, open, udp int
			for _, tg := range c.Targets {
				forbidden += len(tg.Expect.NeverOpen)
				for _, p := range tg.Expect.NeverOpen {
					if p.Proto == "udp" {
						udp++
					}
				}
				if tg.Expect.OpenSet {
					open++
				}
			}
			require.Positive(t, forbidden, "a DMZ watch needs never_open ports")
			require.Positive(t, udp, "and UDP ones: SNMP, TFTP, memcached")
			require.Positive(t, open, "a DMZ watch needs an expect.open allow list")
			require.NotEmpty(t, c.Receivers)
		}},
		{"version-drift.yml", func(t *testing.T, c *config.Config) {
			var rules int
			for _, tg := range c.Targets {
				require.True(t, tg.ServiceDetection.Enabled, "target %s: version drift needs -sV", tg.Name)
				rules += len(tg.Expect.Versions)
			}
			require.Positive(t, rules, "a version-drift watch needs expect.versions")
		}},
		{"large-estate.yml", func(t *testing.T, c *config.Config) {
			s := c.Global.Shard
			require.Greater(t, s.Total, 1)
			// Every target belongs to exactly one of the shards.
			owners := map[string]int{}
			for i := range s.Total {
				c.Global.Shard.Index = i
				for _, tg := range c.OwnedTargets() {
					owners[tg.Name]++
				}
			}
			require.Len(t, owners, len(c.Targets))
			for name, n := range owners {
				require.Equal(t, 1, n, "target %s", name)
			}
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c, err := config.Load(filepath.Join("examples", tc.file))
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
	// Every example is in the table above.
	files, err := filepath.Glob(filepath.Join("examples", "*"))
	require.NoError(t, err)
	require.Len(t, files, 3)
}

// TestCheckConfigExamples runs the built binary's check-config on every
// example: what an operator runs before installing one.
func TestCheckConfigExamples(t *testing.T) {
	lab.RequireTool(t, "go")
	bin := lab.BuildExposure(t)
	files, err := filepath.Glob(filepath.Join("examples", "*.yml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, "check-config", f).CombinedOutput()
			require.NoError(t, err, "%s", out)
			require.Contains(t, string(out), "valid")
		})
	}
	// The same command rejects a broken copy with exit status 2, so the
	// success above means something.
	b, err := os.ReadFile(filepath.Join("examples", "dmz.yml"))
	require.NoError(t, err)
	bad := filepath.Join(t.TempDir(), "bad.yml")
	require.NoError(t, os.WriteFile(bad, []byte(strings.Replace(string(b), "- 3389   # rdp", "- 99999  # rdp", 1)), 0o644))
	out, err := exec.CommandContext(t.Context(), bin, "check-config", bad).CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v: %s", err, out)
	require.Equal(t, 2, ee.ExitCode(), "%s", out)
	require.Contains(t, string(out), "99999")
}

func TestPromtoolRules(t *testing.T) {
	promtool := lab.RequireTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "rules.yml"},
		{"test", "rules", "rules_test.yml"},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, promtool, args...)
			cmd.Dir = "prometheus"
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			require.Contains(t, string(out), "SUCCESS")
		})
	}
}

// TestPromtoolRulesCatchBreakage shows the fixtures have teeth: the rules
// with a threshold changed must fail them.
func TestPromtoolRulesCatchBreakage(t *testing.T) {
	promtool := lab.RequireTool(t, "promtool")
	b, err := os.ReadFile(filepath.Join("prometheus", "rules.yml"))
	require.NoError(t, err)
	test, err := os.ReadFile(filepath.Join("prometheus", "rules_test.yml"))
	require.NoError(t, err)
	for _, tc := range []struct{ name, old, new string }{
		{"stale threshold", "> 3 * 3600", "> 6 * 3600"},
		{"exporter job", `up{job="exposure"}`, `up{job="exposure-exporter"}`},
		{"tls window", "< 14 * 86400", "< 7 * 86400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Contains(t, string(b), tc.old)
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yml"), []byte(strings.Replace(string(b), tc.old, tc.new, 1)), 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "rules_test.yml"), test, 0o644))
			cmd := exec.CommandContext(t.Context(), promtool, "test", "rules", "rules_test.yml")
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			require.Error(t, err, "%s", out)
			require.Contains(t, string(out), "FAILED")
		})
	}
}
