package monitor

import (
	"fmt"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes is the daemon's HTTP surface. exporter-toolkit wraps it with TLS
// and basic auth from --web.config.file.
func (d *daemonState) routes() http.Handler {
	mux := http.NewServeMux()
	reg := d.opts.Registry
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg,
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true})))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "Healthy.")
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !d.ready.Load() {
			http.Error(w, "Not ready.", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Ready.")
	})
	reload := func(w http.ResponseWriter, r *http.Request) {
		if err := d.requestReload(r.Context()); err != nil {
			http.Error(w, "reload failed: "+err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "Reloaded.")
	}
	// PUT as well as POST, as Prometheus accepts both.
	mux.HandleFunc("POST /-/reload", reload)
	mux.HandleFunc("PUT /-/reload", reload)
	mux.HandleFunc("GET /{$}", d.statusPage)
	mux.Handle("/api/", newAPI(d.store, d.collector, d.logger, d.opts.Now)) // read-only JSON, api.go
	if d.opts.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index) // heap, allocs, goroutine ... by name
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}
