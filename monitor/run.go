package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/alert"
	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/scanner/service"
	"github.com/exposure-monitor/exposure/store"
)

// daemonState is one running daemon. Everything in it is built by Run.
type daemonState struct {
	opts      Options
	logger    *slog.Logger
	store     *store.Store
	metrics   *metrics
	collector *portCollector
	sched     *scheduler
	limiter   *rate.Limiter
	engines   *engineSet
	// detectors on the embedded probe database, by detectorKey; touched
	// only by the main loop (startup and reload).
	detectors map[string]*service.Detector
	// detections are the times of incremental service detection.
	detections *svDetections
	scanners   scannerBuilder
	status     *statusBoard

	current atomic.Pointer[runtimeConfig]
	ready   atomic.Bool
	reloads chan chan error
	// stopping is closed when the main loop ends: reload requests no
	// longer wait for it.
	stopping chan struct{}

	generatorURL string
	addrs        []string
	// readyCh is closed once the daemon reported READY=1.
	readyCh chan struct{}

	// lastReload is the outcome of the last reload (nil before any).
	lastReload atomic.Pointer[reloadOutcome]

	dispMu     sync.Mutex
	dispatcher *alert.Dispatcher
	dispStop   context.CancelFunc
	dispDone   chan struct{}
}

// Run runs the daemon until ctx is cancelled: it loads the configuration,
// opens the store, serves HTTP, schedules every target and reloads on
// SIGHUP or POST /-/reload. On return, running scans have been cancelled,
// what they scanned is committed as incomplete, and the store is closed.
func Run(ctx context.Context, o Options) error {
	if err := o.validate(); err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	return newDaemonState(o).run(ctx, nil)
}

func newDaemonState(o Options) *daemonState {
	return &daemonState{opts: o, logger: o.Logger, reloads: make(chan chan error), readyCh: make(chan struct{}), stopping: make(chan struct{}),
		detections: newSVDetections()}
}

func (d *daemonState) run(ctx context.Context, scanners scannerBuilder) (err error) {
	o := d.opts
	if scanners == nil {
		scanners = d.realScanners
	}
	d.scanners = scanners

	cfg, err := loadConfig(o.ConfigFile)
	if err != nil {
		return err
	}
	if *o.Web.WebConfigFile != "" {
		if err := web.Validate(*o.Web.WebConfigFile); err != nil {
			return &ConfigError{Err: fmt.Errorf("web config %s: %w", *o.Web.WebConfigFile, err)}
		}
	}
	if d.metrics, err = newMetrics(o.Registry); err != nil {
		return err
	}
	d.collector = newPortCollector(cfg.Global.SeriesBudget)
	if err := o.Registry.Register(d.collector); err != nil {
		return fmt.Errorf("register collector: %w", err)
	}
	d.limiter = rate.NewLimiter(rate.Limit(cfg.Global.ScanRate), burst(cfg.Global.ScanRate))
	rc, err := buildRuntime(cfg, d.logger, scanners)
	if err != nil {
		return fmt.Errorf("config %s: %w", configName(cfg), err)
	}

	scheme, err := webScheme(*o.Web.WebConfigFile)
	if err != nil {
		return &ConfigError{Err: err}
	}
	// Bind before the database is created: a port in use must not leave a
	// new empty database behind.
	listeners, err := d.listen()
	if err != nil {
		return err
	}
	served := false
	defer func() {
		if !served {
			closeAll(listeners)
		}
	}()
	created, err := createStorageDir(o.StoragePath)
	if err != nil {
		return err
	}
	st, err := store.Open(o.StoragePath, store.Options{})
	if err != nil {
		created.remove()
		return fmt.Errorf("open storage: %w", err)
	}
	d.store = st
	// The API file is written only under the database's lock, so a second
	// daemon refused by the lock never touches the first one's.
	api := apiURL(listeners, scheme)
	started := false
	defer func() {
		if api != "" {
			if rerr := os.Remove(APIFile(o.StoragePath)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("remove API file: %w", rerr))
			}
		}
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close storage: %w", cerr))
		}
		if !started {
			created.remove()
		}
	}()
	if api != "" {
		if err := writeAPIURL(o.StoragePath, api); err != nil {
			return err
		}
	}
	d.status = newStatusBoard(st, o.Now)
	d.current.Store(rc)
	d.preload(rc)

	d.sched = newScheduler(time.Local, cfg.Global.MaxConcurrentScans, d.metrics, d.logger)
	if d.opts.TuneGC {
		d.sched.gc = newGCTuner()
		defer d.sched.gc.restore()
	}
	d.generatorURL = generatorURL(listeners, scheme)
	for _, l := range listeners {
		d.addrs = append(d.addrs, l.Addr().String())
	}
	srv := &http.Server{Handler: d.routes(), ReadHeaderTimeout: 10 * time.Second}
	served = true
	serveErr := make(chan error, 1)
	go func() {
		err := web.ServeMultiple(listeners, srv, o.Web, d.logger)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		serveErr <- err
	}()

	if err := d.startDispatcher(ctx, rc); err != nil {
		_ = srv.Close()
		return err
	}
	d.sched.apply(d.specs(rc), true)
	d.sched.start()
	started = true
	d.metrics.reloadSuccessful.Set(1)
	d.metrics.reloadTimestamp.Set(float64(o.Now().Unix()))
	d.ready.Store(true)
	d.notify(sdReady)
	close(d.readyCh)
	d.logger.Info("exposure daemon started", "config", configName(cfg), "storage", o.StoragePath,
		"targets", len(rc.targets), "receivers", len(rc.receivers), "web", strings.Join(d.addrs, ","))

	wdCtx, wdStop := context.WithCancel(ctx)
	defer wdStop()
	if interval, err := daemon.SdWatchdogEnabled(false); err == nil && interval > 0 {
		go d.watchdog(wdCtx, interval)
	}
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	d.prune(ctx, cfg)

loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-serveErr:
			if err != nil {
				err = fmt.Errorf("web server: %w", err)
			}
			break loop
		case <-o.Reload:
			_ = d.reload(ctx)
		case reply := <-d.reloads:
			reply <- d.reload(ctx)
		case <-prune.C:
			d.prune(ctx, d.current.Load().cfg)
		}
	}

	d.ready.Store(false)
	close(d.stopping)
	d.notify(sdStopping)
	d.logger.Info("stopping: cancelling running scans")
	wdStop()
	sctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer cancel()
	if serr := d.sched.stop(sctx); serr != nil {
		d.logger.Error("scans did not stop in time", "err", serr)
	}
	d.stopDispatcher()
	if serr := srv.Shutdown(sctx); serr != nil {
		_ = srv.Close()
	}
	d.logger.Info("stopped")
	return err
}

// ConfigError marks a configuration that cannot be loaded: the command
// exits with status 2.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, &ConfigError{Err: err}
	}
	return cfg, nil
}

func configName(cfg *config.Config) string {
	if f := cfg.File(); f != "" {
		return f
	}
	return config.DefaultFile
}

// burst lets the limiter release a batch of packets at once: a tenth of a
// second's worth.
func burst(pps int) int { return max(1, pps/10) }

// preload fills the collector, the gauges and the status page from the
// store, so a restart does not blank the dashboards until the next scan.
func (d *daemonState) preload(rc *runtimeConfig) {
	for _, t := range rc.targets {
		d.preloadTarget(t.Name)
	}
	releaseMemory(d.store, d.logger)
}

func (d *daemonState) preloadTarget(name string) {
	s, err := d.store.LatestComplete(name)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			d.logger.Warn("cannot read the latest snapshot", "target", name, "err", err)
		}
		return
	}
	d.collector.set(s)
	d.metrics.setLatest(s)
}

// listen opens the web listeners before readiness is reported, so READY=1
// means the port is bound.
func (d *daemonState) listen() ([]net.Listener, error) {
	f := d.opts.Web
	if f.WebSystemdSocket != nil && *f.WebSystemdSocket {
		ls, err := activation.Listeners()
		if err != nil {
			return nil, fmt.Errorf("systemd socket activation: %w", err)
		}
		if len(ls) == 0 {
			return nil, errors.New("systemd socket activation: no sockets passed")
		}
		return ls, nil
	}
	var ls []net.Listener
	for _, addr := range *f.WebListenAddresses {
		if strings.HasPrefix(addr, "vsock://") {
			closeAll(ls)
			return nil, fmt.Errorf("listen on %s: vsock is not supported", addr)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll(ls)
			return nil, fmt.Errorf("listen: %w", err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		_ = l.Close()
	}
}

func generatorURL(ls []net.Listener, scheme string) string {
	if len(ls) == 0 {
		return ""
	}
	return scheme + "://" + ls[0].Addr().String() + "/"
}

// specs turns the targets of a configuration into scheduler entries. The
// job looks the target up in the configuration current when it runs.
func (d *daemonState) specs(rc *runtimeConfig) []scheduleSpec {
	out := make([]scheduleSpec, 0, len(rc.targets))
	for _, t := range rc.targets {
		name := t.Name
		out = append(out, targetSpec(t, rc.cfg.Global, func(ctx context.Context) { d.runTarget(ctx, name) }))
	}
	return out
}

func (d *daemonState) runTarget(ctx context.Context, name string) {
	rc := d.current.Load()
	t := rc.byName[name]
	if t == nil {
		return
	}
	deps := jobDeps{
		store:     d.store,
		scan:      rc.scan,
		differ:    rc.differ,
		collector: d.collector,
		metrics:   d.metrics,
		logger:    d.logger,
		now:       d.opts.Now,
		wake:      d.wake,
		record:    d.status.record,

		detections: d.detections,
	}
	runScan(ctx, deps, t, rc.cfg.Global, rc.planFor(t, d.generatorURL, d.opts.Now()))
}

// reloadOutcome is when the last reload ran and, if it failed, why.
type reloadOutcome struct {
	At  time.Time
	Err string
}

// reload loads the configuration file again and swaps it in only when all
// of it, including everything built from it, is valid.
func (d *daemonState) reload(ctx context.Context) error {
	d.notify(reloadingState())
	defer d.notify(sdReady)
	err := d.doReload(ctx)
	if err != nil {
		d.metrics.reloadSuccessful.Set(0)
		d.lastReload.Store(&reloadOutcome{At: d.opts.Now(), Err: cleanError(err)})
		d.logger.Error("reload failed; keeping the running configuration", "err", err)
		return err
	}
	d.lastReload.Store(&reloadOutcome{At: d.opts.Now()})
	d.metrics.reloadSuccessful.Set(1)
	d.metrics.reloadTimestamp.Set(float64(d.opts.Now().Unix()))
	return nil
}

func (d *daemonState) doReload(ctx context.Context) error {
	cfg, err := loadConfig(d.opts.ConfigFile)
	if err != nil {
		return err
	}
	rc, err := buildRuntime(cfg, d.logger, d.scanners)
	if err != nil {
		return fmt.Errorf("config %s: %w", configName(cfg), err)
	}
	old := d.current.Load()
	if rc.receiversKey != old.receiversKey {
		// One long-lived dispatcher: its metrics keep counting across reloads.
		if err := d.setNotifiers(rc); err != nil {
			return err
		}
	}
	d.current.Store(rc)
	d.limiter.SetLimit(rate.Limit(cfg.Global.ScanRate))
	d.limiter.SetBurst(burst(cfg.Global.ScanRate))
	d.sched.setMaxConcurrent(cfg.Global.MaxConcurrentScans)
	d.collector.setBudget(cfg.Global.SeriesBudget)
	keep := map[string]bool{}
	for _, t := range rc.targets {
		keep[t.Name] = true
		if old.byName[t.Name] == nil {
			d.preloadTarget(t.Name)
		}
	}
	d.collector.retain(keep)
	d.status.retain(keep)
	d.sched.apply(d.specs(rc), false)
	d.logger.Info("configuration reloaded", "config", configName(cfg), "targets", len(rc.targets), "receivers", len(rc.receivers))
	return nil
}

// requestReload asks the main loop to reload and waits for the outcome.
func (d *daemonState) requestReload(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case d.reloads <- reply:
	case <-d.stopping:
		return errors.New("shutting down")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *daemonState) prune(ctx context.Context, cfg *config.Config) {
	if cfg.Global.Retention <= 0 {
		return
	}
	n, err := d.store.Prune(ctx, d.opts.Now().Add(-time.Duration(cfg.Global.Retention)))
	if err != nil {
		d.logger.Warn("prune failed", "err", err)
		return
	}
	if n > 0 {
		d.logger.Info("pruned old snapshots", "count", n)
	}
}

// startDispatcher starts delivering the outbox to rc's receivers.
func (d *daemonState) startDispatcher(ctx context.Context, rc *runtimeConfig) error {
	d.dispMu.Lock()
	defer d.dispMu.Unlock()
	disp, err := alert.NewDispatcher(alert.DispatcherOptions{
		Outbox:     d.store,
		Notifiers:  rc.notifiers,
		Registerer: d.opts.Registry,
		Logger:     d.logger,
		Now:        d.opts.Now,
	})
	if err != nil {
		return fmt.Errorf("alert dispatcher: %w", err)
	}
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = disp.Run(dctx)
	}()
	d.dispatcher, d.dispStop, d.dispDone = disp, cancel, done
	return nil
}

func (d *daemonState) stopDispatcher() {
	d.dispMu.Lock()
	defer d.dispMu.Unlock()
	if d.dispatcher == nil {
		return
	}
	d.dispStop()
	<-d.dispDone
	d.dispatcher = nil
}

func (d *daemonState) wake() {
	d.dispMu.Lock()
	defer d.dispMu.Unlock()
	if d.dispatcher != nil {
		d.dispatcher.Wake()
	}
}

// setNotifiers hands a reloaded configuration's receivers to the running
// dispatcher.
func (d *daemonState) setNotifiers(rc *runtimeConfig) error {
	d.dispMu.Lock()
	defer d.dispMu.Unlock()
	if d.dispatcher == nil {
		return nil
	}
	return d.dispatcher.SetNotifiers(rc.notifiers)
}
