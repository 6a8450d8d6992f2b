package alert

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

func amEntry(t *testing.T, key string) Entry {
	t.Helper()
	now := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	alerts := []model.Alert{{
		Labels:      model.LabelSet{"alertname": "ExposureForbiddenPort", "target": "dmz", "severity": "critical"},
		Annotations: model.LabelSet{"summary": "x"},
		StartsAt:    now, EndsAt: now.Add(time.Hour),
	}}
	return Entry{Receiver: "am", Key: key, Created: now, NextAttempt: now, Body: mustJSON(alerts)}
}

func TestAlertmanagerPostsV2(t *testing.T) {
	srv := newScriptedServer(t, 200)
	am, err := NewAlertmanager(AlertmanagerOptions{URLs: []string{srv.URL + "/prefix/"}})
	require.NoError(t, err)
	retry, err := am.Notify(context.Background(), amEntry(t, "k1"), amEntry(t, "k2"))
	require.NoError(t, err)
	require.False(t, retry)
	reqs := srv.got()
	require.Len(t, reqs, 1, "entries are batched into one POST")
	require.Equal(t, "/prefix/api/v2/alerts", reqs[0].path)
	require.Empty(t, reqs[0].header.Get("Authorization"))
	var got []model.Alert
	require.NoError(t, json.Unmarshal(reqs[0].body, &got))
	require.Len(t, got, 2)
	require.Equal(t, model.LabelValue("ExposureForbiddenPort"), got[0].Labels["alertname"])
	require.NoError(t, got[0].Validate())
}

func TestAlertmanagerAuth(t *testing.T) {
	tests := []struct {
		name string
		opts func(t *testing.T) AlertmanagerOptions
		want string
	}{
		{"basic", func(t *testing.T) AlertmanagerOptions {
			return AlertmanagerOptions{Username: "exposure", PasswordFile: writeSecret(t, "pa55word")}
		}, "Basic " + base64.StdEncoding.EncodeToString([]byte("exposure:pa55word"))},
		{"bearer", func(t *testing.T) AlertmanagerOptions {
			return AlertmanagerOptions{BearerTokenFile: writeSecret(t, "tok-123456")}
		}, "Bearer tok-123456"},
		{"none", func(t *testing.T) AlertmanagerOptions { return AlertmanagerOptions{} }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newScriptedServer(t, 200)
			o := tt.opts(t)
			o.URLs = []string{srv.URL}
			am, err := NewAlertmanager(o)
			require.NoError(t, err)
			_, err = am.Notify(context.Background(), amEntry(t, "k"))
			require.NoError(t, err)
			require.Equal(t, tt.want, srv.got()[0].header.Get("Authorization"))
		})
	}
}

func TestAlertmanagerOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    AlertmanagerOptions
		want string
	}{
		{"no url", AlertmanagerOptions{}, "alertmanager receiver: no url"},
		{"both auths", AlertmanagerOptions{URLs: []string{"http://a"}, Username: "u", BearerTokenFile: "/x"}, "alertmanager receiver: basic_auth and bearer_token_file are mutually exclusive"},
		{"password without user", AlertmanagerOptions{URLs: []string{"http://a"}, PasswordFile: "/x"}, "alertmanager receiver: basic_auth: password_file without username"},
		{"scheme", AlertmanagerOptions{URLs: []string{"ftp://u:hunter22@a/x"}}, "alertmanager receiver: urls[0] ftp://<redacted>@a/x: want http(s)://host[:port][/prefix]"},
		{"unparsable", AlertmanagerOptions{URLs: []string{"http://u:hunter22@a b\x7f/"}}, "alertmanager receiver: urls[0]: invalid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewAlertmanager(tt.o)
			require.EqualError(t, err, tt.want)
		})
	}
}

// TestAlertmanagerCluster checks the HA rule: delivered when at least one
// member accepted; otherwise retried if any failure is retryable.
func TestAlertmanagerCluster(t *testing.T) {
	tests := []struct {
		name     string
		statuses [2]int
		wantErr  bool
		retry    bool
		warnings int
	}{
		{"both accept", [2]int{200, 200}, false, false, 0},
		{"one down", [2]int{200, 503}, false, false, 1},
		{"one refuses", [2]int{400, 200}, false, false, 1},
		{"both down", [2]int{500, 503}, true, true, 0},
		{"one down one refuses", [2]int{400, 500}, true, true, 0},
		{"both refuse", [2]int{400, 422}, true, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newScriptedServer(t, tt.statuses[0]), newScriptedServer(t, tt.statuses[1])
			logger, logs := newTestLogger()
			am, err := NewAlertmanager(AlertmanagerOptions{URLs: []string{a.URL, b.URL}, Logger: logger})
			require.NoError(t, err)
			retry, err := am.Notify(context.Background(), amEntry(t, "k"))
			require.Equal(t, tt.wantErr, err != nil, "err: %v", err)
			require.Equal(t, tt.retry, retry)
			require.Len(t, a.got(), 1)
			require.Len(t, b.got(), 1)
			require.Equal(t, tt.warnings, logs.count("did not accept"))
		})
	}
}

func TestAlertmanagerUnreachable(t *testing.T) {
	srv := httptest.NewServer(nil)
	url := srv.URL
	srv.Close()
	am, err := NewAlertmanager(AlertmanagerOptions{URLs: []string{url}, Timeout: time.Second})
	require.NoError(t, err)
	retry, err := am.Notify(context.Background(), amEntry(t, "k"))
	require.Error(t, err)
	require.True(t, retry, "network errors are retried")

	am, err = NewAlertmanager(AlertmanagerOptions{URLs: []string{url}, BearerTokenFile: "/nonexistent/token"})
	require.NoError(t, err)
	retry, err = am.Notify(context.Background(), amEntry(t, "k"))
	require.ErrorContains(t, err, "/nonexistent/token")
	require.True(t, retry)
}
