package alert

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"

	"github.com/exposure-monitor/exposure/config"
)

// AlertmanagerOptions configures an Alertmanager v2 receiver. Credentials are
// file paths, read at every send.
type AlertmanagerOptions struct {
	// URLs are the base URLs of the cluster's members
	// (http://127.0.0.1:9093, or with a path prefix); /api/v2/alerts is
	// appended.
	URLs []string
	// Username and PasswordFile enable basic auth.
	Username     string
	PasswordFile string
	// BearerTokenFile enables "Authorization: Bearer"; exclusive with basic
	// auth.
	BearerTokenFile string
	// Timeout bounds each POST; default 10s.
	Timeout time.Duration
	// Client defaults to a client with no overall timeout of its own.
	Client *http.Client
	// Logger receives partial failures of an HA cluster.
	Logger *slog.Logger
}

func (o *AlertmanagerOptions) validate() error {
	if len(o.URLs) == 0 {
		return errors.New("no url")
	}
	if o.BearerTokenFile != "" && (o.Username != "" || o.PasswordFile != "") {
		return errors.New("basic_auth and bearer_token_file are mutually exclusive")
	}
	if o.PasswordFile != "" && o.Username == "" {
		return errors.New("basic_auth: password_file without username")
	}
	if o.Timeout < 0 {
		return fmt.Errorf("negative timeout %s", o.Timeout)
	}
	return nil
}

type amPeer struct {
	url      string // full endpoint, may carry user info
	redacted string
	// userinfo holds the password embedded in the URL and its basic auth
	// encoding, scrubbed from answers.
	userinfo []Secret
}

// Alertmanager posts alerts to every member of an Alertmanager cluster.
//
// Delivery rule for a cluster (Alertmanager members do not gossip alerts, so
// Prometheus sends to each): an entry is delivered when at least one member
// accepted it. Members that failed are logged; they catch up on conditions
// at the next scan, which re-sends every firing condition. Requiring every
// member instead would let one dead member hold back all later alerts from
// the live ones, since the outbox delivers in order. When no member accepted,
// the entry is retried if any member's failure was retryable, and dropped
// otherwise.
type Alertmanager struct {
	opts   AlertmanagerOptions
	peers  []amPeer
	sender sender
	logger *slog.Logger
}

var _ Notifier = (*Alertmanager)(nil)

// NewAlertmanager checks the options. URLs with user info are accepted (the
// user info becomes basic auth, as in net/http) but always redacted.
func NewAlertmanager(o AlertmanagerOptions) (*Alertmanager, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("alertmanager receiver: %w", err)
	}
	a := &Alertmanager{opts: o, sender: newSender(o.Client, o.Timeout), logger: o.Logger}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	for i, raw := range o.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			// url.Parse errors quote the whole input; say which one instead.
			return nil, fmt.Errorf("alertmanager receiver: urls[%d]: invalid URL", i)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("alertmanager receiver: urls[%d] %s: want http(s)://host[:port][/prefix]", i, redactUserinfoURL(u))
		}
		u.Path = strings.TrimRight(u.Path, "/") + "/api/v2/alerts"
		u.RawPath = ""
		p := amPeer{url: u.String(), redacted: redactUserinfoURL(u)}
		if pw, ok := u.User.Password(); ok {
			enc := base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + pw))
			p.userinfo = []Secret{Secret(pw), Secret(enc)}
		}
		a.peers = append(a.peers, p)
	}
	return a, nil
}

// Notify posts the alerts of all entries as one batch to every member.
func (a *Alertmanager) Notify(ctx context.Context, entries ...Entry) (bool, error) {
	var alerts []model.Alert
	for _, e := range entries {
		var batch []model.Alert
		if err := json.Unmarshal(e.Body, &batch); err != nil {
			return false, fmt.Errorf("decode outbox entry %s: %w", e.Key, err)
		}
		alerts = append(alerts, batch...)
	}
	if len(alerts) == 0 {
		return false, nil
	}
	body, err := json.Marshal(alerts)
	if err != nil {
		return false, fmt.Errorf("encode alerts: %w", err)
	}
	header, secrets, err := a.auth()
	if err != nil {
		// A missing password file will not fix itself within a backoff
		// step, but it is an operator error the operator can fix: retry.
		return true, fmt.Errorf("alertmanager auth: %w", err)
	}

	type result struct {
		retry bool
		err   error
	}
	results := make([]result, len(a.peers))
	var wg sync.WaitGroup
	for i, p := range a.peers {
		wg.Go(func() {
			r, err := a.sender.post(ctx, request{url: p.url, redacted: p.redacted, body: body, header: header.Clone(),
				secrets: append(slices.Clone(secrets), p.userinfo...)})
			results[i] = result{r, err}
		})
	}
	wg.Wait()

	var errs []error
	accepted, retry := 0, false
	for _, r := range results {
		if r.err == nil {
			accepted++
			continue
		}
		errs = append(errs, r.err)
		retry = retry || r.retry
	}
	if accepted > 0 {
		for _, err := range errs {
			a.logger.Warn("alertmanager cluster member did not accept alerts", "accepted_by", accepted, "members", len(a.peers), "err", err)
		}
		return false, nil
	}
	return retry, errors.Join(errs...)
}

func (a *Alertmanager) auth() (http.Header, []Secret, error) {
	h := http.Header{}
	switch {
	case a.opts.BearerTokenFile != "":
		tok, err := readSecretFile(a.opts.BearerTokenFile)
		if err != nil {
			return nil, nil, err
		}
		h.Set("Authorization", "Bearer "+tok.Reveal())
		return h, []Secret{tok}, nil
	case a.opts.Username != "":
		var pw Secret
		if a.opts.PasswordFile != "" {
			var err error
			if pw, err = readSecretFile(a.opts.PasswordFile); err != nil {
				return nil, nil, err
			}
		}
		r := http.Request{Header: h}
		r.SetBasicAuth(a.opts.Username, pw.Reveal())
		// The encoded header gives the password away as well.
		encoded := Secret(strings.TrimPrefix(h.Get("Authorization"), "Basic "))
		return h, []Secret{pw, encoded}, nil
	}
	return h, nil, nil
}

// buildAlertmanager is the alertmanager entry of receiverKinds.
func buildAlertmanager(r *config.Receiver, logger *slog.Logger) (Notifier, error) {
	a := r.Alertmanager
	o := AlertmanagerOptions{URLs: a.Endpoints(), BearerTokenFile: a.BearerTokenFile,
		Timeout: time.Duration(a.Timeout), Logger: logger}
	if a.BasicAuth != nil {
		o.Username, o.PasswordFile = a.BasicAuth.Username, a.BasicAuth.PasswordFile
	}
	return NewAlertmanager(o)
}

// alertmanagerPayload is the v2 API body: events with their lifetime,
// firing conditions valid until in.Validity from now, resolved ones ending
// now.
func alertmanagerPayload(in *PlanInput, r Receiver, c routed) []byte {
	lifetime := in.EventLifetime
	if r.EventLifetime > 0 {
		lifetime = r.EventLifetime
	}
	var alerts []model.Alert
	for _, ch := range c.events {
		alerts = append(alerts, in.alert(ch, ch.At, ch.At.Add(lifetime)))
	}
	for _, ch := range c.firing {
		alerts = append(alerts, in.alert(ch, ch.At, in.Now.Add(in.Validity)))
	}
	for _, ch := range c.resolved {
		alerts = append(alerts, in.alert(ch, ch.At, in.Now))
	}
	if len(alerts) == 0 {
		return nil
	}
	return mustJSON(dedupAlerts(alerts))
}
