// Package monitor is the exposure daemon: it schedules every configured
// target with robfig/cron/v3, runs each scan job (sweep, service detection,
// diff, confirmation, one store commit with the alert outbox), exports the
// Prometheus metrics of DESIGN.md, serves /metrics, the health endpoints and
// a status page through prometheus/exporter-toolkit, reloads its
// configuration on SIGHUP or POST /-/reload, and talks to systemd
// (READY, RELOADING, STOPPING, watchdog).
//
// Run is the only entry point. Everything it needs (registry, logger, clock,
// reload signal) is passed in through Options; the package keeps no
// package-level state.
//
// The scheduler, the job pipeline and the collector each depend on small
// interfaces defined here (jobFunc, sweeper, annotator, commitStore) so they
// can be tested with fakes and testing/synctest, and are wired to the real
// scanner, service, store, diff and alert packages in wire.go.
package monitor
