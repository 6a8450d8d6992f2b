package monitor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/config"
)

// TestRuntimeEventLifetimePerReceiver: a receiver with event_lifetime 5m
// keeps 5m beside one with 1h (the runtime used to give both the largest).
func TestRuntimeEventLifetimePerReceiver(t *testing.T) {
	cfg, err := config.Parse("x.yml", []byte(`
targets:
  - name: lo
    hosts: [127.0.0.1]
    ports: "22"
    engine: connect
    schedule: "@every 1h"
receivers:
  - name: short
    event_lifetime: 5m
    log: {}
  - name: long
    event_lifetime: 1h
    log: {}
`))
	require.NoError(t, err)
	noScan := func(*config.Config) (scanFunc, differ, error) { return nil, nil, nil }
	rc, err := buildRuntime(cfg, discardLogger(), noScan)
	require.NoError(t, err)
	got := map[string]time.Duration{}
	for _, r := range rc.receivers {
		got[r.Name] = r.EventLifetime
	}
	require.Equal(t, map[string]time.Duration{"short": 5 * time.Minute, "long": time.Hour}, got)
}
