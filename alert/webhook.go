package alert

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/snapshot"
)

// Webhook signature and idempotency headers.
const (
	SignatureHeader   = "X-Exposure-Signature"
	IdempotencyHeader = "Idempotency-Key"
)

// WebhookOptions configures a webhook receiver.
type WebhookOptions struct {
	URL string
	// SecretFile holds the HMAC-SHA256 key; without it requests are not
	// signed.
	SecretFile string
	// Timeout bounds each POST; default 10s.
	Timeout time.Duration
	Client  *http.Client
}

// Webhook posts the changes of each entry as
// {"version": 1, "target": ..., "changes": [...], "resolved": [...]}, signed
// with X-Exposure-Signature: sha256=<hex HMAC-SHA256(body, secret)>, with the
// entry key as Idempotency-Key so a receiver can drop the duplicates that
// at-least-once delivery produces.
type Webhook struct {
	url      string
	redacted string
	secret   string // file path
	sender   sender
}

var _ Notifier = (*Webhook)(nil)

// NewWebhook checks the options.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, errors.New("webhook receiver: invalid url")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("webhook receiver: url %s: want an http or https URL with a host", redactHostURL(u))
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("webhook receiver: negative timeout %s", o.Timeout)
	}
	return &Webhook{url: o.URL, redacted: redactHostURL(u), secret: o.SecretFile, sender: newSender(o.Client, o.Timeout)}, nil
}

// Sign returns the X-Exposure-Signature value for body.
func Sign(body []byte, secret Secret) string {
	m := hmac.New(sha256.New, []byte(secret.Reveal()))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks an X-Exposure-Signature value in constant time; a
// receiver written in Go can use it.
func VerifySignature(body []byte, secret Secret, header string) bool {
	return hmac.Equal([]byte(Sign(body, secret)), []byte(header))
}

// Notify posts each entry on its own, in order, and stops at the first
// failure: the entries after it are not attempted.
func (w *Webhook) Notify(ctx context.Context, entries ...Entry) (bool, error) {
	var secret Secret
	if w.secret != "" {
		var err error
		if secret, err = readSecretFile(w.secret); err != nil {
			return true, fmt.Errorf("webhook signature: %w", err)
		}
	}
	for _, e := range entries {
		h := http.Header{}
		h.Set(IdempotencyHeader, e.Key)
		if secret != "" {
			h.Set(SignatureHeader, Sign(e.Body, secret))
		}
		if retry, err := w.sender.post(ctx, request{url: w.url, redacted: w.redacted, body: e.Body, header: h, secrets: []Secret{secret}}); err != nil {
			return retry, err
		}
	}
	return false, nil
}

// buildWebhook is the webhook entry of receiverKinds.
func buildWebhook(r *config.Receiver, _ *slog.Logger) (Notifier, error) {
	return NewWebhook(WebhookOptions{URL: r.Webhook.URL, SecretFile: r.Webhook.SecretFile, Timeout: time.Duration(r.Webhook.Timeout)})
}

// webhookPayload is the WebhookPayload of a scan: its events and the
// conditions that started firing, and the resolved ones. The log receiver
// gets it too.
func webhookPayload(in *PlanInput, _ Receiver, c routed) []byte {
	p := WebhookPayload{
		Version:  1,
		Target:   in.Target,
		Snapshot: in.SnapshotID,
		Changes:  append(c.events, c.started...),
		Resolved: c.resolved,
	}
	if len(p.Changes) == 0 && len(p.Resolved) == 0 {
		return nil
	}
	if p.Changes == nil {
		p.Changes = []snapshot.Change{}
	}
	return mustJSON(p)
}
