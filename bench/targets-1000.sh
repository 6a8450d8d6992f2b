#!/usr/bin/env bash
# targets-1000.sh: one daemon with 1,000 targets, each a /28 of loopback
# (127.1.0.0/28, 127.1.0.16/28, ... 16,000 addresses of 127.0.0.0/8, which
# Linux answers on lo: no packet leaves the machine), on mixed schedules, for
# DURATION (default 10m). Two listeners on 0.0.0.0 make one port open on
# every address: an HTTP server (service detection on for every tenth
# target) and an accept-and-close port; a third port is closed. It reports:
#
#   - how the runs spread: scan starts per 10 s bucket against an even
#     spread (the thundering-herd check of the scheduler's offsets);
#   - /metrics scrape time every 10 s (max, median) with series_budget
#     10,000 against 32,000 open ports, and that the budget was applied;
#   - the daemon's RSS (sampled every 10 s, and its peak), CPU seconds per
#     scan, and the database size after the first minute and at the end.
#
# The scans use the connect engine with reverse DNS off, so the figures are
# the daemon's own (scheduling, diff, commit, metrics), not a raw-socket
# engine's. Usage: bench/targets-1000.sh [DURATION_SECONDS]
set -euo pipefail
NAME=targets-1000
duration=${1:-600}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
. bench/estate.sh
srvpids=()
cleanup_all() {
  for p in "${srvpids[@]}"; do kill "$p" 2>/dev/null || true; done
  estate_cleanup
}
trap cleanup_all EXIT

free_port() {
  local p
  p=$(shuf -i 20000-60000 -n 1)
  while ss -Htln "sport = :$p" | grep -q .; do p=$(shuf -i 20000-60000 -n 1); done
  echo "$p"
}
web=$(free_port)
sink=$(free_port)
closed=$(free_port)
# http.server's own listen backlog is 5: -sV's concurrent probes of 16
# addresses overflow it and wait out SYN retransmits (1 s, 3 s), so the
# benchmark's web server listens as nginx does (backlog 511 and more).
python3 -c '
import http.server, sys
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 4096
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
S(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
' "$web" 2>/dev/null & # probes that reset their connections make it print tracebacks
srvpids+=($!)
python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(4096)
while True:
    c, _ = s.accept(); c.close()
' "$sink" &
srvpids+=($!)
sleep 1

build_exposure
{
  cat <<YML
global:
  run_at_start: true
  jitter: 10m
  max_concurrent_scans: 4
  series_budget: 10000
defaults:
  ports: "$web,$sink,$closed"
  engine: connect
  reverse_dns: false
  retries: 0
  service_detection: {enabled: false, timeout: 2s}
targets:
YML
  for i in $(seq 0 999); do
    case $((i % 10)) in
      0 | 1) sched='@every 1m' ;;
      2 | 3 | 4) sched='@every 2m' ;;
      5 | 6 | 7) sched='*/5 * * * *' ;;
      *) sched='@every 10m' ;;
    esac
    a=$((i * 16))
    printf '  - {name: t%04d, hosts: [127.%d.%d.%d/28], schedule: "%s"' "$i" $((1 + a / 65536)) $((a / 256 % 256)) $((a % 256)) "$sched"
    if [ $((i % 10)) -eq 9 ]; then printf ', service_detection: {enabled: true, timeout: 2s}'; fi
    printf '}\n'
  done
} >"$work/exposure.yml"
"$work/exposure" check-config "$work/exposure.yml" >/dev/null

daemon_up "$work/exposure.yml" "$work/exposure.db"
t0=$(date +%s)
printf 'daemon up with 1,000 targets: RSS %d kB\n' "$(rss_kb "$dpid")"
: >"$work/scrapes"
: >"$work/rss"
db_1m=
while [ $(($(date +%s) - t0)) -lt "$duration" ]; do
  curl -s -o "$work/metrics" -w '%{time_total}\n' "$durl/metrics" >>"$work/scrapes"
  rss_kb "$dpid" >>"$work/rss"
  if [ -z "$db_1m" ] && [ $(($(date +%s) - t0)) -ge 60 ]; then db_1m=$(stat -c %s "$work/exposure.db"); fi
  sleep 10
done
cpu=$(cpu_s "$dpid")
scans=$(awk '/^exposure_scans_total\{/ {s += $2} END {print s}' "$work/metrics")
skipped=$(awk '/^exposure_scans_skipped_total\{/ {s += $2} END {print s}' "$work/metrics")
failed=$(awk '/^exposure_scans_total\{.*result="(failed|incomplete)"/ {s += $2} END {print s+0}' "$work/metrics")
dropped=$(awk '/^exposure_series_dropped / {print $2}' "$work/metrics")
series=$(grep -c '^exposure_port_open{' "$work/metrics" || true)
open=$(awk '/^exposure_open_ports\{/ {s += $2} END {print s}' "$work/metrics")
printf 'ran %d s: %d scans (%d failed or incomplete, %d skipped), %.1f CPU s, %.3f CPU s per scan\n' \
  "$duration" "$scans" "$failed" "$skipped" "$cpu" "$(echo "$cpu / $scans" | bc -l)"
awk '/^exposure_scan_duration_seconds_sum/ {s += $2} /^exposure_scan_duration_seconds_count/ {n += $2}
  END {printf "scan duration: mean %.3f s (sweep, -sV on every tenth target, diff, commit)\n", s / n}' "$work/metrics"
awk '/^exposure_service_detections_total\{.*result="kept"/ {k += $2} /^exposure_service_detections_total\{.*result="full"/ {f += $2}
  END {printf "service detection: %d ports kept after the cheap check, %d detected in full\n", k, f}' "$work/metrics"
sort -n "$work/scrapes" | awk '{a[NR]=$1} END {printf "/metrics scrape: median %.3f s, max %.3f s over %d scrapes\n", a[int((NR+1)/2)], a[NR], NR}'
printf 'series budget: %d open ports, %d exposure_port_open series exported, %s dropped\n' "$open" "$series" "$dropped"
sort -n "$work/rss" | awk '{a[NR]=$1} END {printf "RSS: median %d kB, max sampled %d kB", a[int((NR+1)/2)], a[NR]}'
printf ', peak %d kB\n' "$(peak_kb "$dpid")"
dbend=$(stat -c %s "$work/exposure.db")
printf 'database: %d bytes after 1 min, %d at the end (%.0f bytes per scan after the first minute)\n' \
  "${db_1m:-0}" "$dbend" "$(echo "($dbend - ${db_1m:-0}) / $scans" | bc -l)"

# Spread: every scan's start from the API, in 10 s buckets after the first
# minute (the runs at start are spread by the same offsets).
for i in $(seq 0 999); do
  curl -s "$durl/api/v1/snapshots?target=$(printf 't%04d' "$i")&limit=10000" |
    jq -r 'if type == "array" then .[].started_at else empty end' # a target not run yet: 404
done >"$work/starts"
python3 - "$work/starts" "$t0" "$duration" <<'PY'
import sys, datetime, collections
t0, duration = int(sys.argv[2]), int(sys.argv[3])
b = collections.Counter()
for line in open(sys.argv[1]):
    t = datetime.datetime.fromisoformat(line.strip().replace("Z", "+00:00")).timestamp()
    if t0 + 60 <= t < t0 + duration // 10 * 10:
        b[int((t - t0) // 10)] += 1
if b:
    lo, hi = min(b), max(b)
    counts = [b.get(k, 0) for k in range(lo, hi + 1)]
    mean = sum(counts) / len(counts)
    print("scan starts per 10 s after the first minute: mean %.1f, max %d (%.1fx the mean), min %d, over %d buckets"
          % (mean, max(counts), max(counts) / mean, min(counts), len(counts)))
PY
