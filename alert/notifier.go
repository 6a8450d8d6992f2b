package alert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/exposure-monitor/exposure/internal/textsafe"
	"github.com/exposure-monitor/exposure/store"
)

// Entry is one outbox entry: the notification for one receiver and one
// scan. Key is deterministic (see Plan), sorts chronologically and is sent
// as the webhook Idempotency-Key; Body is the rendered payload the notifier
// sends. It is the store's type, so *store.Store is an Outbox as it is.
type Entry = store.OutboxEntry

// Notifier delivers outbox entries to one receiver. retry tells the caller
// whether trying again later can help; it is meaningful only with a non-nil
// error.
type Notifier interface {
	Notify(ctx context.Context, entries ...Entry) (retry bool, err error)
}

// HTTPError is a non-2xx answer from a receiver. URL is already redacted.
type HTTPError struct {
	URL        string
	StatusCode int
	// Body is the start of the response body, sanitised.
	Body string
	// RetryAfter is the receiver's Retry-After hint, zero when absent.
	RetryAfter time.Duration
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("%s: unexpected status %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Body != "" {
		s += ": " + strconv.Quote(e.Body)
	}
	return s
}

// Retryable follows Alertmanager's and the policy: 5xx, 429 and 408
// can succeed later, any other non-2xx answer will not.
func (e *HTTPError) Retryable() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusRequestTimeout
}

// retryAfter returns the Retry-After hint carried by err, or zero.
func retryAfter(err error) time.Duration {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.RetryAfter
	}
	return 0
}

const (
	maxErrorBody     = 256
	defaultTimeout   = 10 * time.Second
	userAgent        = "exposure-alert/1"
	maxRetryAfterHdr = time.Hour
)

// request is one POST of a JSON body.
type request struct {
	url string
	// redacted is the printable form of url.
	redacted string
	body     []byte
	header   http.Header
	// secrets are scrubbed from anything the receiver answers.
	secrets []Secret
}

// sender posts requests with a per-request timeout.
type sender struct {
	client  *http.Client
	timeout time.Duration
}

func newSender(client *http.Client, timeout time.Duration) sender {
	if client == nil {
		client = &http.Client{}
	}
	if timeout == 0 {
		timeout = defaultTimeout
	}
	return sender{client: client, timeout: timeout}
}

// post sends r and classifies the outcome.
func (s sender) post(ctx context.Context, r request) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	url, redacted, secrets := r.url, r.redacted, r.secrets
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(r.body))
	if err != nil {
		return false, fmt.Errorf("build request for %s: %w", redacted, redactError(err, redacted))
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := s.client.Do(req)
	if err != nil {
		// Transport errors (refused, reset, timeout) are worth retrying. When
		// the caller's context is over the entry must stay queued too.
		return true, fmt.Errorf("post to %s: %w", redacted, redactError(err, redacted))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 4*maxErrorBody))
	// Drain a little more so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	he := &HTTPError{
		URL:        redacted,
		StatusCode: resp.StatusCode,
		Body:       textsafe.Clean(scrub(string(snippet), secrets...), maxErrorBody),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}
	return he.Retryable(), he
}

// parseRetryAfter reads delta-seconds or an HTTP date, bounded to an hour.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.Atoi(v); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfterHdr)
}

// NotifierFunc adapts a function to Notifier, like http.HandlerFunc.
type NotifierFunc func(ctx context.Context, entries ...Entry) (bool, error)

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, entries ...Entry) (bool, error) {
	return f(ctx, entries...)
}
