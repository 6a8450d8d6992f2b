package alert

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/snapshot"
)

// scriptedServer answers with the given statuses in turn (the last one
// repeats) and records every request.
type scriptedServer struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	requests []recorded
	header   http.Header // extra response headers
	echo     bool        // echo request headers in the body
}

type recorded struct {
	path   string
	header http.Header
	body   []byte
}

func newScriptedServer(t *testing.T, statuses ...int) *scriptedServer {
	s := &scriptedServer{statuses: statuses}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		n := len(s.requests)
		s.requests = append(s.requests, recorded{path: r.URL.Path, header: r.Header.Clone(), body: body})
		st := s.statuses[min(n, len(s.statuses)-1)]
		for k, v := range s.header {
			w.Header()[k] = v
		}
		echo := s.echo
		s.mu.Unlock()
		w.WriteHeader(st)
		if echo {
			for k, v := range r.Header {
				io.WriteString(w, k+": "+strings.Join(v, ",")+"\n")
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *scriptedServer) got() []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.requests...)
}

func webhookEntry(receiver, key string) Entry {
	body := mustJSON(WebhookPayload{Version: 1, Target: "dmz", Changes: []snapshot.Change{{
		Kind: snapshot.PortOpened, Target: "dmz", Address: "198.18.0.2", Port: 4444, Protocol: "tcp",
		At: time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC),
	}}})
	return Entry{Receiver: receiver, Key: key, Created: time.Unix(1, 0), NextAttempt: time.Unix(1, 0), Body: body}
}

// startDispatcher runs a dispatcher with millisecond backoff until the test
// ends.
func startDispatcher(t *testing.T, o DispatcherOptions) (*Dispatcher, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	if o.MinBackoff == 0 {
		o.MinBackoff, o.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	if o.PollInterval == 0 {
		o.PollInterval = 10 * time.Millisecond
	}
	d, err := NewDispatcher(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("dispatcher did not stop")
		}
	})
	return d, reg
}

func counter(t *testing.T, d *Dispatcher, receiver, result string) float64 {
	t.Helper()
	return testutil.ToFloat64(d.notifications.WithLabelValues(receiver, result))
}

func TestWebhookRetryPolicy(t *testing.T) {
	tests := []struct {
		name      string
		statuses  []int
		requests  int // requests until the entry leaves the outbox
		delivered float64
		failed    float64
		dropped   float64
	}{
		{"ok", []int{200}, 1, 1, 0, 0},
		{"accepted", []int{202}, 1, 1, 0, 0},
		{"500 then 200", []int{500, 200}, 2, 1, 1, 0},
		{"500 five times then 200", []int{500, 500, 500, 500, 500, 200}, 6, 1, 5, 0},
		{"429 retried", []int{429, 429, 204}, 3, 1, 2, 0},
		{"503 retried", []int{503, 200}, 2, 1, 1, 0},
		{"400 dropped", []int{400, 200}, 1, 0, 0, 1},
		{"404 dropped", []int{404, 200}, 1, 0, 0, 1},
		{"401 dropped", []int{401, 200}, 1, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const secret = "hmac-key-0123456789"
			srv := newScriptedServer(t, tt.statuses...)
			wh, err := NewWebhook(WebhookOptions{URL: srv.URL + "/hook", SecretFile: writeSecret(t, secret)})
			require.NoError(t, err)
			e := webhookEntry("hook", "0000000000000001-abc")
			ob := newMemOutbox(e)
			logger, logs := newTestLogger()
			d, _ := startDispatcher(t, DispatcherOptions{Outbox: ob, Notifiers: map[string]Notifier{"hook": wh}, Logger: logger})

			require.Eventually(t, func() bool { n, _ := ob.OutboxLen(); return n == 0 }, 10*time.Second, 5*time.Millisecond)
			// Nothing more is sent once the entry is gone.
			time.Sleep(30 * time.Millisecond)
			reqs := srv.got()
			require.Len(t, reqs, tt.requests)
			for _, r := range reqs {
				require.Equal(t, e.Body, r.body, "the body is the outbox entry, byte for byte")
				require.Equal(t, "0000000000000001-abc", r.header.Get(IdempotencyHeader), "idempotency key stable across retries")
				mac := hmac.New(sha256.New, []byte(secret))
				mac.Write(r.body)
				require.Equal(t, "sha256="+hex.EncodeToString(mac.Sum(nil)), r.header.Get(SignatureHeader))
				require.True(t, VerifySignature(r.body, Secret(secret), r.header.Get(SignatureHeader)))
				require.Equal(t, "application/json", r.header.Get("Content-Type"))
			}
			require.Equal(t, tt.delivered, counter(t, d, "hook", ResultDelivered))
			require.Equal(t, tt.failed, counter(t, d, "hook", ResultFailed))
			require.Equal(t, tt.dropped, counter(t, d, "hook", ResultDropped))
			if tt.dropped > 0 {
				require.Contains(t, logs.String(), "dropping")
			}
			if tt.failed > 0 {
				// The same error text every time: logged once.
				require.Equal(t, 1, logs.count("notification failed, will retry"), logs.String())
				require.Equal(t, 1, logs.count("receiver recovered"), logs.String())
			}
		})
	}
}

func TestWebhookPayloadDecodes(t *testing.T) {
	srv := newScriptedServer(t, 200)
	wh, err := NewWebhook(WebhookOptions{URL: srv.URL})
	require.NoError(t, err)
	retry, err := wh.Notify(context.Background(), webhookEntry("hook", "k1"))
	require.NoError(t, err)
	require.False(t, retry)
	reqs := srv.got()
	require.Len(t, reqs, 1)
	require.Empty(t, reqs[0].header.Get(SignatureHeader), "no secret_file, no signature")
	var p struct {
		Version int               `json:"version"`
		Target  string            `json:"target"`
		Changes []json.RawMessage `json:"changes"`
	}
	require.NoError(t, json.Unmarshal(reqs[0].body, &p))
	require.Equal(t, 1, p.Version)
	require.Equal(t, "dmz", p.Target)
	require.Len(t, p.Changes, 1)
	require.JSONEq(t, `{"kind":"port_opened","target":"dmz","address":"198.18.0.2","port":4444,"protocol":"tcp","at":"2026-11-25T06:00:00Z","snapshot":""}`, string(p.Changes[0]))
}

func TestWebhookSecretRotation(t *testing.T) {
	srv := newScriptedServer(t, 200)
	path := writeSecret(t, "first-secret")
	wh, err := NewWebhook(WebhookOptions{URL: srv.URL, SecretFile: path})
	require.NoError(t, err)
	e := webhookEntry("hook", "k1")
	_, err = wh.Notify(context.Background(), e)
	require.NoError(t, err)
	require.NoError(t, writeFile(path, "second-secret\n"))
	_, err = wh.Notify(context.Background(), e)
	require.NoError(t, err)
	reqs := srv.got()
	require.True(t, VerifySignature(e.Body, "first-secret", reqs[0].header.Get(SignatureHeader)))
	require.True(t, VerifySignature(e.Body, "second-secret", reqs[1].header.Get(SignatureHeader)), "secret is read at send time")
	require.False(t, VerifySignature(e.Body, "first-secret", reqs[1].header.Get(SignatureHeader)))

	require.NoError(t, writeFile(path, ""))
	retry, err := wh.Notify(context.Background(), e)
	require.Error(t, err)
	require.True(t, retry, "an empty secret file is an operator error worth retrying")
	require.Len(t, srv.got(), 2, "nothing unsigned is sent")
}

func TestWebhookRetryAfter(t *testing.T) {
	srv := newScriptedServer(t, 429)
	srv.header = http.Header{"Retry-After": {"120"}}
	wh, err := NewWebhook(WebhookOptions{URL: srv.URL})
	require.NoError(t, err)
	retry, err := wh.Notify(context.Background(), webhookEntry("hook", "k"))
	require.True(t, retry)
	require.Equal(t, 120*time.Second, retryAfter(err))

	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	require.Equal(t, 30*time.Second, parseRetryAfter(now.Add(30*time.Second).Format(http.TimeFormat), now))
	require.Equal(t, time.Hour, parseRetryAfter("999999", now))
	require.Equal(t, time.Duration(0), parseRetryAfter("soon", now))
	require.Equal(t, time.Duration(0), parseRetryAfter("-5", now))
}
