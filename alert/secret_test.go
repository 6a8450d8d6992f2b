package alert

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSecretNeverFormats(t *testing.T) {
	s := Secret("hunter2-very-secret")
	logger, logs := newTestLogger()
	logger.Info("x", "secret", s)
	b, err := json.Marshal(struct{ S Secret }{s})
	require.NoError(t, err)
	var back struct{ S string }
	require.NoError(t, json.Unmarshal(b, &back))
	for _, got := range []string{
		fmt.Sprint(s), fmt.Sprintf("%v %s %+v %#v %q", s, s, s, s, s), back.S, logs.String(),
	} {
		require.NotContains(t, got, "hunter2")
		require.Contains(t, got, "<secret>")
	}
	require.Equal(t, "hunter2-very-secret", s.Reveal())
}

func TestReadSecretFile(t *testing.T) {
	s, err := readSecretFile(writeSecret(t, "  pw with spaces inside  "))
	require.NoError(t, err)
	require.Equal(t, "pw with spaces inside", s.Reveal())
	_, err = readSecretFile(writeSecret(t, " \n"))
	require.ErrorContains(t, err, "empty")
	_, err = readSecretFile(writeSecret(t, strings.Repeat("x", maxSecretSize+1)))
	require.ErrorContains(t, err, "larger than")
}

func TestRedaction(t *testing.T) {
	const (
		password  = "am-pa55word-XYZ"
		userinfo  = "urlpass-QQQ"
		token     = "bearer-tok-ABC"
		hookPath  = "T000/B000/hookpathtoken"
		hookQuery = "querytoken-789"
		hmacKey   = "hmac-key-LMN"
	)
	secrets := []string{password, userinfo, token, hookPath, "hookpathtoken", hookQuery, hmacKey,
		base64.StdEncoding.EncodeToString([]byte("exposure:" + password)),
		base64.StdEncoding.EncodeToString([]byte("exposure:" + userinfo))}

	live := newScriptedServer(t, 500)
	live.echo = true // a receiver that echoes our headers in its error body
	dead := httptest.NewServer(nil)
	deadURL := dead.URL
	dead.Close()

	withUser := func(base string) string {
		return strings.Replace(base, "http://", "http://exposure:"+userinfo+"@", 1) + "/am/?token=" + hookQuery
	}
	amBasic, err := NewAlertmanager(AlertmanagerOptions{URLs: []string{live.URL, deadURL}, Username: "exposure", PasswordFile: writeSecret(t, password), Timeout: time.Second})
	require.NoError(t, err)
	amBearer, err := NewAlertmanager(AlertmanagerOptions{URLs: []string{live.URL, deadURL}, BearerTokenFile: writeSecret(t, token), Timeout: time.Second})
	require.NoError(t, err)
	amUser, err := NewAlertmanager(AlertmanagerOptions{URLs: []string{withUser(live.URL), withUser(deadURL)}, Timeout: time.Second})
	require.NoError(t, err)
	hookLive, err := NewWebhook(WebhookOptions{URL: live.URL + "/services/" + hookPath + "?token=" + hookQuery, SecretFile: writeSecret(t, hmacKey), Timeout: time.Second})
	require.NoError(t, err)
	hookDead, err := NewWebhook(WebhookOptions{URL: deadURL + "/services/" + hookPath + "?token=" + hookQuery, SecretFile: writeSecret(t, hmacKey), Timeout: time.Second})
	require.NoError(t, err)

	ob := newMemOutbox(amEntry(t, "k1"))
	for _, r := range []string{"am-basic", "am-bearer", "am-user"} {
		e := amEntry(t, "k1")
		e.Receiver = r
		ob.add(e)
	}
	ob.add(webhookEntry("hook-live", "k1"))
	ob.add(webhookEntry("hook-dead", "k1"))
	logger, logs := newTestLogger()
	startDispatcher(t, DispatcherOptions{Outbox: ob, Logger: logger, Notifiers: map[string]Notifier{
		"am-basic": amBasic, "am-bearer": amBearer, "am-user": amUser, "hook-live": hookLive, "hook-dead": hookDead,
	}})
	require.Eventually(t, func() bool { return logs.count("notification failed") >= 5 }, 10*time.Second, 5*time.Millisecond)

	var errs []string
	for _, n := range []Notifier{amBasic, amBearer, amUser, hookLive, hookDead} {
		_, err := n.Notify(context.Background(), webhookOrAM(t, n))
		require.Error(t, err)
		errs = append(errs, err.Error())
	}
	all := strings.Join(errs, "\n") + "\n" + logs.String()
	for _, s := range secrets {
		require.NotContains(t, all, s)
	}
	// The live server did echo the credentials, so scrubbing was needed.
	require.Contains(t, all, "<secret>")
	require.Contains(t, all, strings.TrimPrefix(live.URL, "http://")+"/<redacted>")
	require.Contains(t, all, "<redacted>@"+strings.TrimPrefix(live.URL, "http://")+"/am/api/v2/alerts?<redacted>")
	require.Contains(t, all, "connection refused")
	require.Contains(t, all, strings.TrimPrefix(deadURL, "http://")+"/<redacted>")
}

func webhookOrAM(t *testing.T, n Notifier) Entry {
	if _, ok := n.(*Webhook); ok {
		return webhookEntry("x", "k")
	}
	return amEntry(t, "k")
}
