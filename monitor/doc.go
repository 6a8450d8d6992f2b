// Package monitor is the exposure daemon: it schedules every configured
// target with robfig/cron/v3, runs each scan job, exports the Prometheus
// metrics of docs/architecture.md, serves HTTP through prometheus/exporter-toolkit,
// reloads its configuration on SIGHUP or POST /-/reload, and talks to
// systemd. Run is the only entry point; everything it needs (registry,
// logger, clock, reload signal) comes in through Options, and the package
// keeps no package-level state.
//
// # Scheduling
//
// One cron.Cron (Recover in its chain) holds one entry per target owned by
// this shard, each wrapped in cron.SkipIfStillRunning whose logger turns
// "skip" into exposure_scans_skipped_total{target}. A per-target lock that
// survives reschedules catches the overlaps cron cannot see (a run at start,
// a target rescheduled mid-scan). Each target's runs are shifted by a fixed
// offset, the hash of its name scaled below global.jitter and half its
// schedule's interval (as Prometheus spreads scrapes), so targets on one
// schedule start apart and each keeps its period. A run takes a slot of
// global.max_concurrent_scans, then scans under the target's timeout. All
// engines share one rate.Limiter (global.scan_rate).
//
// # A job
//
// Sweep (scanner.SweepSpec: the TCP ports with SYN or connect, the UDP
// ports with the UDP engine, into one snapshot; each concurrent UDP scan
// gets an engine of its own, since one binds a fixed source port), -sV on
// open ports, TCP and UDP (scanner/service;
// a port open with the same protocol in the previous complete scan keeps
// that scan's service, unprobed, until service_detection.refresh (0, the
// default, turns this off) has passed
// since its detection, the times held in memory: see engines.go),
// then, for a complete scan only, diff.Diff against the stored state,
// diff.Confirm re-probing exactly the pending ports with the same engines,
// each over its own protocol (a UDP port that went silent, open|filtered,
// is closed only when the UDP re-probes hear nothing either),
// and diff.Evaluate for the conditions that hold. alert.Plan turns events
// and conditions into outbox entries, and snapshot, changes, outbox entries
// and state (diff state plus firing conditions) go to the store in ONE
// store.Commit. A failed or cut-short scan is stored with complete=false
// and never diffed; a timeout or failure raises the scan_failing condition,
// a cancellation (shutdown, target removed) raises nothing. Each scan logs
// one line: target, result, duration, hosts_up, open_ports, changes,
// snapshot (and err, control characters stripped and bounded).
//
// # HTTP
//
//	GET  /           status page (html/template, no JavaScript): targets,
//	                 reload, receiver and outbox health, changes, open ports
//	GET  /metrics    Prometheus metrics (OpenMetrics negotiated)
//	GET  /-/healthy  200 while the process runs
//	GET  /-/ready    200 once config, store and listener are up; 503 before
//	                 and while stopping
//	POST /-/reload   reload the config; 200, or 500 with the errors
//	GET  /api/v1/changes?target=&since=&until=&limit=  changes as NDJSON,
//	                 the `exposure history --format json` lines
//	GET  /api/v1/snapshot?target=[&at=] | ?id=  one snapshot document
//	GET  /api/v1/snapshots?target=  scans, newest first
//
// The /api/v1 endpoints are read-only; history, diff and show fall back to
// them while the daemon holds the database file's lock.
//
// # Metrics
//
// Per target: exposure_scan_duration_seconds, exposure_scans_total{result}
// (success, incomplete, failed), exposure_scans_skipped_total,
// exposure_last_scan_success_timestamp_seconds, exposure_open_ports,
// exposure_hosts_up, exposure_changes_total{kind},
// exposure_probes_sent_total, exposure_probe_retransmits_total. Daemon:
// exposure_targets, exposure_scans_running,
// exposure_config_last_reload_successful,
// exposure_config_last_reload_success_timestamp_seconds. A target's
// counters (scans_total for every result, changes_total for every kind,
// scans_skipped_total) are created at 0 when it is scheduled, so
// increase() sees its first change; the alert package
// adds exposure_notifications_total{receiver,result} and
// exposure_outbox_pending. Per open port, from the latest complete snapshot
// held in memory (built once per commit, never read from bbolt at scrape
// time): exposure_port_open{target,address,port,protocol,service},
// exposure_service_info{target,address,port,protocol,product,version} and
// exposure_tls_cert_not_after_timestamp_seconds{target,address,port,protocol}
// (protocol "tcp" or "udp": 53/tcp and 53/udp are two series),
// at most global.series_budget of them per scrape (open ports first), with
// exposure_series_dropped counting what was left out.
//
// # Reload and systemd
//
// A reload builds everything from the new file (notifiers, engines,
// service detectors) before swapping; a bad file keeps the running
// configuration and sets exposure_config_last_reload_successful to 0.
// Removed targets stop (their running scan is cancelled), added ones start
// (with their run at start), targets whose schedule, timeout or jitter
// changed are rescheduled; other changes apply from the next run. Around it
// the daemon sends RELOADING=1 (with MONOTONIC_USEC) and READY=1; READY=1
// at start once config, store and listener are up; STOPPING=1 on the way
// out; WATCHDOG=1 at half of WatchdogSec while the cron loop answers.
package monitor
