package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/exposure-monitor/exposure/internal/textsafe"
	"github.com/exposure-monitor/exposure/store"
)

// Outbox is the part of the store the dispatcher uses; *store.Store
// implements it.
type Outbox interface {
	// OutboxPending returns up to limit entries of receiver, all of them
	// when limit <= 0. The dispatcher asks for all (a limit applied in
	// another order could let a newer entry overtake an older one) and
	// orders them by Created, then Key.
	OutboxPending(receiver string, limit int) ([]Entry, error)
	// OutboxAck deletes an entry.
	OutboxAck(receiver, key string) error
	// OutboxRetry stores an entry's new Attempts and NextAttempt.
	OutboxRetry(e Entry) error
	// OutboxLen counts all entries of all receivers.
	OutboxLen() (int, error)
	// OutboxReceivers counts the entries of every receiver that has any.
	OutboxReceivers() (map[string]int, error)
}

var _ Outbox = (*store.Store)(nil)

// Results of exposure_notifications_total.
const (
	ResultDelivered = "delivered" // the receiver accepted the entry
	ResultFailed    = "failed"    // a retryable failure; the entry stays queued
	ResultDropped   = "dropped"   // refused for good (e.g. 400); deleted and logged
)

// DispatcherOptions configures a Dispatcher.
type DispatcherOptions struct {
	Outbox Outbox
	// Notifiers maps receiver names (Entry.Receiver) to their notifiers; one
	// worker runs per receiver.
	Notifiers  map[string]Notifier
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// PollInterval is how often an idle worker looks at the outbox even
	// without Wake; default 30s.
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the retry delay, which doubles per
	// attempt with jitter; defaults 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (o *DispatcherOptions) validate() error {
	if o.Outbox == nil {
		return errors.New("no outbox")
	}
	if o.Registerer == nil {
		return errors.New("no registerer")
	}
	for name, n := range o.Notifiers {
		if name == "" || n == nil {
			return fmt.Errorf("receiver %q: empty name or nil notifier", name)
		}
	}
	if o.PollInterval < 0 || o.MinBackoff < 0 || o.MaxBackoff < 0 {
		return errors.New("negative interval or backoff")
	}
	if o.MaxBackoff != 0 && o.MinBackoff > o.MaxBackoff {
		return fmt.Errorf("min backoff %s above max backoff %s", o.MinBackoff, o.MaxBackoff)
	}
	return nil
}

// Dispatcher delivers the outbox: one worker per receiver sends that
// receiver's entries strictly in order (a resolution never overtakes the
// alert it resolves), deleting each only after the receiver accepted it.
type Dispatcher struct {
	opts   DispatcherOptions
	logger *slog.Logger
	reload chan struct{}

	mu            sync.Mutex
	notifiers     map[string]Notifier
	wake          map[string]chan struct{}
	notifications *prometheus.CounterVec
	lastPending   atomic.Int64
	health        map[string]ReceiverHealth
}

// NewDispatcher registers exposure_notifications_total and
// exposure_outbox_pending on o.Registerer.
func NewDispatcher(o DispatcherOptions) (*Dispatcher, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("alert dispatcher: %w", err)
	}
	if o.PollInterval == 0 {
		o.PollInterval = 30 * time.Second
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = max(5*time.Minute, o.MinBackoff)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &Dispatcher{opts: o, logger: o.Logger, reload: make(chan struct{}, 1)}
	if d.logger == nil {
		d.logger = slog.New(slog.DiscardHandler)
	}
	d.notifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: prometheus.BuildFQName("exposure", "", "notifications_total"),
		Help: "Outbox entries handed to receivers, by receiver and result (delivered, failed: will be retried, dropped: refused for good).",
	}, []string{"receiver", "result"})
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: prometheus.BuildFQName("exposure", "outbox", "pending"),
		Help: "Notifications waiting in the outbox for delivery.",
	}, d.pending)
	for _, c := range []prometheus.Collector{d.notifications, pending} {
		if err := o.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("alert dispatcher: register metrics: %w", err)
		}
	}
	d.setNotifiers(o.Notifiers)
	return d, nil
}

func (d *Dispatcher) setNotifiers(ns map[string]Notifier) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.notifiers = map[string]Notifier{}
	d.wake = map[string]chan struct{}{}
	for name, n := range ns {
		d.notifiers[name] = n
		d.wake[name] = make(chan struct{}, 1)
		for _, r := range []string{ResultDelivered, ResultFailed, ResultDropped} {
			d.notifications.WithLabelValues(name, r)
		}
	}
}

// SetNotifiers replaces the receivers after a configuration reload. Running
// workers are stopped (an entry being sent stays queued and is sent again
// by the new worker: receivers dedup by key or labels) and one worker per
// new receiver is started. Entries of a receiver that is gone stay in the
// outbox, counted in exposure_outbox_pending, until it comes back.
func (d *Dispatcher) SetNotifiers(ns map[string]Notifier) error {
	o := DispatcherOptions{Outbox: d.opts.Outbox, Registerer: d.opts.Registerer, Notifiers: ns}
	if err := o.validate(); err != nil {
		return fmt.Errorf("alert dispatcher: %w", err)
	}
	d.setNotifiers(ns)
	select {
	case d.reload <- struct{}{}:
	default:
	}
	return nil
}

// pending reads the outbox size at scrape time; on a store error it keeps
// the last good value rather than report a false zero.
func (d *Dispatcher) pending() float64 {
	n, err := d.opts.Outbox.OutboxLen()
	if err == nil {
		d.lastPending.Store(int64(n))
	}
	return float64(d.lastPending.Load())
}

// Wake tells every worker to look at the outbox now. Call it after a store
// commit that added entries. It never blocks.
func (d *Dispatcher) Wake() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ch := range d.wake {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Run delivers until ctx is done, then waits for the workers and returns
// nil. An entry being sent when ctx ends stays in the outbox.
func (d *Dispatcher) Run(ctx context.Context) error {
	for {
		d.warnOrphans()
		wctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		d.mu.Lock()
		for name, n := range d.notifiers {
			w := &worker{d: d, name: name, notifier: n, wake: d.wake[name], logger: d.logger.With("receiver", name)}
			wg.Go(func() { w.run(wctx) })
		}
		d.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-d.reload:
		}
		cancel()
		wg.Wait()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// warnOrphans logs the receivers that have entries queued but are not
// configured: nothing delivers them until the receiver is back.
func (d *Dispatcher) warnOrphans() {
	counts, err := d.opts.Outbox.OutboxReceivers()
	if err != nil {
		d.logger.Warn("alert outbox: cannot list receivers", "err", err)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(counts)) {
		if _, ok := d.notifiers[name]; !ok {
			d.logger.Warn("alert outbox: receiver is not configured; its notifications stay queued until it is",
				"receiver", textsafe.Clean(name, maxLabelLen), "pending", counts[name])
		}
	}
}

type worker struct {
	d        *Dispatcher
	name     string
	notifier Notifier
	wake     chan struct{}
	logger   *slog.Logger
	lastErr  string
}

func (w *worker) run(ctx context.Context) {
	for {
		wait := w.deliver(ctx)
		if ctx.Err() != nil {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-w.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// deliver sends the due entries in order and returns how long to wait before
// looking again.
func (w *worker) deliver(ctx context.Context) time.Duration {
	o := &w.d.opts
	// Bounded: a store that never shrinks cannot pin the worker here.
	for range 1000 {
		entries, err := o.Outbox.OutboxPending(w.name, 0)
		if err != nil {
			w.failed("cannot read outbox", fmt.Errorf("read outbox: %w", err))
			return o.PollInterval
		}
		if len(entries) == 0 {
			return o.PollInterval
		}
		slices.SortFunc(entries, func(a, b Entry) int {
			if c := a.Created.Compare(b.Created); c != 0 {
				return c
			}
			return strings.Compare(a.Key, b.Key)
		})
		for _, e := range entries {
			if ctx.Err() != nil {
				return 0
			}
			if due := e.NextAttempt.Sub(o.Now()); due > 0 {
				// Head of line: later entries wait for this one.
				return min(due, o.PollInterval)
			}
			if wait, ok := w.send(ctx, e); !ok {
				return wait
			}
		}
		// All went through; more may have been committed meanwhile.
	}
	return 0
}

// send delivers one entry. It returns ok when the worker can go on with the
// next entry, or the delay before the next look.
func (w *worker) send(ctx context.Context, e Entry) (time.Duration, bool) {
	o := &w.d.opts
	retry, err := w.notifier.Notify(ctx, e)
	if ctx.Err() != nil {
		// Shutting down: whatever happened, the entry stays as it was.
		return 0, false
	}
	switch {
	case err == nil:
		w.d.notifications.WithLabelValues(w.name, ResultDelivered).Inc()
		if w.lastErr != "" {
			w.logger.Info("receiver recovered", "key", e.Key, "attempts", e.Attempts+1)
			w.lastErr = ""
		}
	case !retry:
		w.d.notifications.WithLabelValues(w.name, ResultDropped).Inc()
		w.logger.Error("receiver refused notification, dropping it", "key", e.Key, "attempts", e.Attempts+1, "err", err)
	default:
		w.d.notifications.WithLabelValues(w.name, ResultFailed).Inc()
		e.Attempts++
		delay := backoff(e.Attempts, o.MinBackoff, o.MaxBackoff)
		if ra := retryAfter(err); ra > delay {
			delay = min(ra, o.MaxBackoff)
		}
		e.NextAttempt = o.Now().Add(delay)
		w.d.noteResult(w.name, err, true)
		if rerr := o.Outbox.OutboxRetry(e); rerr != nil {
			w.failed("cannot record retry", fmt.Errorf("record retry of %s: %w", e.Key, rerr))
		}
		w.failed("notification failed, will retry", err, "key", e.Key, "attempts", e.Attempts, "retry_in", delay.Round(time.Millisecond).String())
		return delay, false
	}
	w.d.noteResult(w.name, err, retry)
	if err := o.Outbox.OutboxAck(w.name, e.Key); err != nil {
		// It will be sent again: receivers dedup by key or labels.
		w.failed("cannot delete delivered entry, it will be sent again", fmt.Errorf("delete delivered entry %s: %w", e.Key, err))
		return o.PollInterval, false
	}
	return 0, true
}

// failed logs err only when its text differs from the previous failure, so
// a receiver down for a day makes one line, not thousands.
func (w *worker) failed(msg string, err error, attrs ...any) {
	if s := err.Error(); s != w.lastErr {
		w.lastErr = s
		w.logger.Warn(msg, append(attrs, "err", err)...)
	}
}

// backoff returns the delay before attempt n+1 after n failures: min·2^(n-1)
// capped at max, with "equal jitter" (between half and all of it) so that
// receivers coming back are not hit by every worker at once.
func backoff(attempts int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < attempts && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	half := d / 2
	return half + rand.N(d-half+1)
}

// ReceiverHealth is what the status page shows of a receiver: its last
// delivery, its last failure (kept until a delivery succeeds) and how many
// entries wait for it.
type ReceiverHealth struct {
	Name          string
	LastDelivered time.Time
	// LastError is the last failure since the last delivery, cleaned and
	// bounded ("" when the receiver is healthy); Dropped says it was a
	// refusal for good rather than a failure that will be retried.
	LastError   string
	LastErrorAt time.Time
	Dropped     bool
	Pending     int
}

// maxHealthErr bounds an error shown on the status page.
const maxHealthErr = 300

func (d *Dispatcher) noteResult(name string, err error, retry bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.health == nil {
		d.health = map[string]ReceiverHealth{}
	}
	h := d.health[name]
	h.Name = name
	if err == nil {
		h.LastDelivered, h.LastError, h.LastErrorAt, h.Dropped = d.opts.Now(), "", time.Time{}, false
	} else {
		h.LastError, h.LastErrorAt, h.Dropped = textsafe.Clean(err.Error(), maxHealthErr), d.opts.Now(), !retry
	}
	d.health[name] = h
}

// Health returns the health of every configured receiver, by name, with
// the entries pending for each (an outbox that cannot be read is an error).
func (d *Dispatcher) Health() ([]ReceiverHealth, error) {
	pending, err := d.opts.Outbox.OutboxReceivers()
	d.mu.Lock()
	out := make([]ReceiverHealth, 0, len(d.notifiers))
	for name := range d.notifiers {
		h := d.health[name]
		h.Name, h.Pending = name, pending[name]
		out = append(out, h)
	}
	d.mu.Unlock()
	slices.SortFunc(out, func(a, b ReceiverHealth) int { return strings.Compare(a.Name, b.Name) })
	if err != nil {
		return out, fmt.Errorf("read outbox: %w", err)
	}
	return out, nil
}
