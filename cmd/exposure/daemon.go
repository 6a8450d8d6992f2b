package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/exposure-monitor/exposure/monitor"
)

// defaultListenAddress keeps the web interface on loopback unless the
// operator chooses otherwise (it shows the network's exposure).
const defaultListenAddress = "127.0.0.1:9917"

// defaultMemoryLimit is --memory.limit's default: below the 128 MB a
// daemon watching a /16 of 98,304 open ports with -sV is to peak at, and
// far above what an idle daemon holds (about 20 MB).
const defaultMemoryLimit = "100MiB"

func daemonCommand(app *kingpin.Application) (string, runFunc) {
	cmd := app.Command("daemon", "Run the monitor: scan every target on its schedule, export metrics, send alerts. Without --config.file it watches 127.0.0.1 (top:1000, every 15 minutes).")
	configFile := cmd.Flag("config.file", "Configuration file; empty runs the embedded default.").PlaceHolder("PATH").String()
	storagePath := cmd.Flag("storage.path", "Database file (default: $STATE_DIRECTORY/exposure.db under systemd, else ./data/exposure.db).").PlaceHolder("PATH").String()
	memoryLimit := cmd.Flag("memory.limit", "Soft limit of the daemon's Go memory (the runtime's memory limit): near it the garbage collector runs more often, so a large estate's scan peaks near its live data rather than at twice it; 0 turns it off. GOMEMLIMIT, when set, wins.").Default(defaultMemoryLimit).PlaceHolder("SIZE").String()
	pprofOn := cmd.Flag("debug.pprof", "Serve Go's runtime profiles (heap, CPU, goroutines) under /debug/pprof/ on the web interface, for `go tool pprof`.").Bool()
	webFlags := kingpinflag.AddFlags(cmd, defaultListenAddress)
	return cmd.FullCommand(), func(ctx context.Context, e *env) error {
		limit, err := units.ParseBase2Bytes(*memoryLimit)
		if err != nil || limit < 0 {
			return usageError{fmt.Errorf("--memory.limit %q: want a size such as 100MiB (0 for none)", *memoryLimit)}
		}
		if _, set := os.LookupEnv("GOMEMLIMIT"); !set && limit > 0 {
			debug.SetMemoryLimit(int64(limit))
		}
		reg := newRegistry()
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		err = monitor.Run(ctx, monitor.Options{
			ConfigFile:  *configFile,
			StoragePath: *storagePath,
			Web:         webFlags,
			Registry:    reg,
			Logger:      e.logger,
			Reload:      hup,
			Pprof:       *pprofOn,
			TuneGC:      true,
		})
		var ce *monitor.ConfigError
		if errors.As(err, &ce) {
			return usageError{err}
		}
		return err
	}
}

// newRegistry is the daemon's registry with the process collectors and
// exposure_build_info (from the link-time version, see version.go).
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("exposure"),
	)
	return reg
}
