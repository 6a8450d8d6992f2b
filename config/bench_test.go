package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// TestPlainYAMLAgrees checks the struct tags against yaml.v3's own strict
// decoder: every good file decodes with KnownFields(true), and the unknown
// fields this package reports are unknown to yaml.v3 too.
func TestPlainYAMLAgrees(t *testing.T) {
	good, err := filepath.Glob("testdata/good/*.yml")
	require.NoError(t, err)
	for _, f := range good {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		var c Config
		require.NoError(t, dec.Decode(&c), f)
	}
	for _, name := range []string{"unknown_field.yml", "unknown_top_level.yml", "basic_auth.yml"} {
		data, err := os.ReadFile(filepath.Join("testdata/bad", name))
		require.NoError(t, err)
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		var c Config
		require.ErrorContains(t, dec.Decode(&c), "not found in type", name)
	}
}

func largeConfig(targets int) []byte {
	var b strings.Builder
	b.WriteString("defaults: {ports: top:1000}\ntargets:\n")
	for i := range targets {
		fmt.Fprintf(&b, "  - name: t%d\n    hosts: [198.18.%d.0/24, host%d.example.test]\n    labels: {team: net}\n    expect: {never_open: [23, 3389]}\n", i, i%256, i)
	}
	return []byte(b.String())
}

func BenchmarkParse(b *testing.B) {
	design, err := os.ReadFile("testdata/good/design.yml")
	require.NoError(b, err)
	for _, bc := range []struct {
		name string
		data []byte
	}{{"design", design}, {"1000targets", largeConfig(1000)}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse("bench.yml", bc.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
