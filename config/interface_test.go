package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGlobalInterface: global.interface is optional, accepts any name the
// kernel would, and rejects others with the line; the interface itself is
// not looked up at load time (a lab bridge may come later).
func TestGlobalInterface(t *testing.T) {
	tests := []struct {
		name, yaml, want, err string
	}{
		{"unset", "", "", ""},
		{"empty", "  interface: \"\"\n", "", ""},
		{"lab bridge", "  interface: explab3\n", "explab3", ""},
		{"missing is fine at load", "  interface: nosuchif0\n", "nosuchif0", ""},
		{"alias", "  interface: \"eth0:1\"\n", "", `exposure.yml:3: global.interface: "eth0:1": must not contain '/' or ':'`},
		{"too long", "  interface: much-too-long-name0\n", "", `exposure.yml:3: global.interface: "much-too-long-name0": longer than 15 bytes`},
		{"space", "  interface: \"eth 0\"\n", "", `exposure.yml:3: global.interface: "eth 0": must not contain white space or control characters`},
		{"not a string", "  interface: [eth0]\n", "", `exposure.yml:3: global.interface`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := "global:\n  scan_rate: 1000\n" + tt.yaml + "targets:\n  - name: lab\n    hosts: [127.0.0.1]\n"
			c, err := Parse("exposure.yml", []byte(data))
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, c.Global.Interface)
		})
	}
}
