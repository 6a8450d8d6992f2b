package alert

import (
	"log/slog"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/config"
)

// TestReceiverKindsMatchConfig: every receiver kind the configuration
// accepts has a notifier and a payload here, and nothing here is unknown
// to the configuration.
func TestReceiverKindsMatchConfig(t *testing.T) {
	kinds := config.ReceiverKinds()
	for _, k := range kinds {
		rk, ok := receiverKinds[ReceiverType(k)]
		require.True(t, ok, "config receiver kind %q has no entry in alert's receiverKinds", k)
		require.NotNil(t, rk.build, k)
		require.NotNil(t, rk.payload, k)
	}
	for k := range receiverKinds {
		require.True(t, slices.Contains(kinds, string(k)), "alert receiver kind %q is unknown to config", k)
	}
}

// TestBuildFromConfig: a configuration with every kind of receiver builds
// one notifier of the right type per receiver, each keeping its own
// event_lifetime.
func TestBuildFromConfig(t *testing.T) {
	cfg, err := config.Parse("exposure.yml", []byte(`
targets:
  - name: t
    hosts: [127.0.0.1]
receivers:
  - name: am
    event_lifetime: 5m
    alertmanager: {url: http://127.0.0.1:9093}
  - name: hook
    event_lifetime: 1h
    webhook: {url: http://127.0.0.1:9/x}
  - name: log
    log: {}
    route: {min_severity: warning}
`))
	require.NoError(t, err)
	rs, ns, err := Build(cfg.Receivers, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Len(t, rs, 3)
	require.IsType(t, &Alertmanager{}, ns["am"])
	require.IsType(t, &Webhook{}, ns["hook"])
	require.IsType(t, &Log{}, ns["log"])
	require.Equal(t, []ReceiverType{ReceiverAlertmanager, ReceiverWebhook, ReceiverLog}, []ReceiverType{rs[0].Type, rs[1].Type, rs[2].Type})
	require.Equal(t, "5m0s", rs[0].EventLifetime.String())
	require.Equal(t, "1h0m0s", rs[1].EventLifetime.String())
	require.Equal(t, "warning", rs[2].Route.MinSeverity.String())
}
