package monitor

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/exporter-toolkit/web"
)

// Options configure Run.
type Options struct {
	// ConfigFile is the YAML configuration; empty runs the embedded default
	// (config.Default).
	ConfigFile string
	// StoragePath is the bbolt file; empty means exposure.db in
	// $STATE_DIRECTORY (systemd's StateDirectory=) or ./data/exposure.db.
	StoragePath string
	// Web holds the exporter-toolkit flags: listen addresses, systemd
	// socket activation and the web config file (TLS, basic auth).
	Web *web.FlagConfig
	// Registry receives every metric of the daemon and is served on
	// /metrics.
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// Reload delivers SIGHUP; nil disables reload by signal.
	Reload <-chan os.Signal
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Notify sends a state to systemd; default daemon.SdNotify.
	Notify func(state string) error
	// ShutdownTimeout bounds the wait for running scans to commit after
	// cancellation; default 30s.
	ShutdownTimeout time.Duration
	// TuneGC runs the garbage collector tighter while no scan runs
	// (idleGCPercent), unless GOGC is set.
	TuneGC bool
	// Pprof serves Go's runtime profiles (net/http/pprof) under
	// /debug/pprof/ on the web interface, behind the same TLS and auth.
	Pprof bool
}

func (o *Options) validate() error {
	if o.Registry == nil {
		return errors.New("no registry")
	}
	if o.Web == nil || o.Web.WebConfigFile == nil {
		return errors.New("no web flags")
	}
	socket := o.Web.WebSystemdSocket != nil && *o.Web.WebSystemdSocket
	if !socket && (o.Web.WebListenAddresses == nil || len(*o.Web.WebListenAddresses) == 0) {
		return errors.New("no web listen address")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Notify == nil {
		o.Notify = func(state string) error {
			_, err := daemon.SdNotify(false, state)
			return err
		}
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	if o.StoragePath == "" {
		o.StoragePath = DefaultStoragePath(os.Getenv("STATE_DIRECTORY"))
	}
	return nil
}

// DefaultStoragePath is where the database lives without --storage.path:
// in systemd's StateDirectory when the service has one (the variable may
// list several, colon-separated; the first is ours), else ./data.
func DefaultStoragePath(stateDirectory string) string {
	if dir, _, _ := strings.Cut(stateDirectory, ":"); dir != "" {
		return filepath.Join(dir, "exposure.db")
	}
	return filepath.Join("data", "exposure.db")
}
