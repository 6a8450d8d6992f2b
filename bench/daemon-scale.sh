#!/usr/bin/env bash
# daemon-scale.sh: the daemon with -sV on the /16 scale lab (issue 15): 65,536
# addresses, 98,304 open ports (an OpenSSH banner on 22 of the even ones, an
# nginx answer on 80 of all). One target scans the prefix on 22,80,8080 with
# service detection, bound to the lab's veth after `ip route get` has shown
# the prefix routes into it. The script reports:
#
#   - the baseline scan (sweep, -sV of every open port, diff, commit) and an
#     unchanged re-scan (the cheap fingerprint check keeps every service), with
#     their ratio, from exposure_scan_duration_seconds;
#   - the daemon's peak RSS (VmHWM) over both, and its RSS 60 s after the
#     re-scan;
#   - a port opened between scans (SIGUSR1 to labctl opens 8080 on one
#     address, an OpenSSH 9.6 banner): the next scan must report it as
#     port_opened with its service;
#   - the database size after each scan.
#
# With --profile DIR the daemon runs with --debug.pprof, and DIR gets heap
# profiles (go tool pprof DIR/heap-*.pb.gz): one every 10 s of the baseline
# and of the re-scan, each named by the daemon's RSS then (heap-scanN-RSSKB),
# one at idle (heap-idle), and /proc's smaps_rollup, the resident kB of each
# mapping (maps-*.txt) and memory metrics with
# them.
#
# Needs root, iproute2, iptables, jq and curl.
#
# Usage: sudo bench/daemon-scale.sh [--bits N] [--interval 4m] [--profile DIR]
set -euo pipefail

BITS=16
INTERVAL=4m
PROFILE=
while [ $# -gt 0 ]; do
	case "$1" in
	--bits) BITS=$2; shift 2 ;;
	--interval) INTERVAL=$2; shift 2 ;;
	--profile) PROFILE=$(realpath -m "$2"); shift 2 ;;
	*) echo "usage: $0 [--bits N] [--interval DURATION] [--profile DIR]" >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "daemon-scale: needs root (raw sockets and network namespaces)" >&2
	exit 1
fi
for b in jq curl ip iptables; do
	command -v "$b" >/dev/null || { echo "daemon-scale: $b is missing (see .ci/install-deps)" >&2; exit 1; }
done

NAME=daemon-scale
WORK=$(mktemp -d /tmp/daemon-scale.XXXXXX)
work=$WORK
# shellcheck source=bench/scalelab.sh
. bench/scalelab.sh
# shellcheck source=bench/estate.sh
. bench/estate.sh
cleanup() {
	estate_cleanup
	scalelab_down
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

scalelab_up "$BITS"
check_route
cat >"$WORK/exposure.yml" <<YAML
global:
  run_at_start: true
  jitter: 0s
  interface: $IFACE
targets:
  - name: estate
    hosts: ["$PREFIX"]
    ports: "22,80,8080"
    schedule: "@every $INTERVAL"
    timeout: 1h # the -sV of 98,304 ports takes longer than the default 10m
    reverse_dns: false
    service_detection: {enabled: true}
receivers:
  - name: log
    log: {}
YAML
if [ -n "$PROFILE" ]; then
	mkdir -p "$PROFILE"
	daemon_up "$WORK/exposure.yml" "$WORK/exposure.db" --debug.pprof
else
	daemon_up "$WORK/exposure.yml" "$WORK/exposure.db"
fi

# profile NAME: the daemon's heap profile, smaps_rollup and memory
# metrics into $PROFILE (nothing without --profile).
profile() {
	[ -n "$PROFILE" ] || return 0
	curl -sf "$durl/debug/pprof/heap" -o "$PROFILE/heap-$1.pb.gz" || true
	cat "/proc/$dpid/smaps_rollup" >"$PROFILE/smaps-$1.txt" 2>/dev/null || true
	# Resident kB per mapping (the binary, the database, anonymous).
	awk '/^[0-9a-f]+-[0-9a-f]+ / { m = ($6 == "" ? "[anon]" : $6) } /^Rss:/ { r[m] += $2 }
		END { for (m in r) if (r[m]) printf "%8d kB %s\n", r[m], m }' "/proc/$dpid/smaps" 2>/dev/null |
		sort -rn >"$PROFILE/maps-$1.txt" || true
	curl -sf "$durl/metrics" | grep -E '^(go_memstats_|go_gc_|process_resident)' >"$PROFILE/metrics-$1.txt" || true
}

metric() { # metric SERIES: its value on /metrics, 0 when absent
	curl -sf "$durl/metrics" | awk -v s="$1" 'index($0, s) == 1 { v = $NF } END { print v + 0 }'
}
scans() { metric 'exposure_scans_total{result="success",target="estate"}'; }
await_scan() { # await_scan N: wait (at most 30 min) for the N-th successful scan
	for i in $(seq 1 1800); do
		[ "$(scans)" -ge "$1" ] && return 0
		kill -0 "$dpid" 2>/dev/null || { tail -20 "$work/daemon.log" >&2; exit 1; }
		[ $((i % 10)) = 0 ] && profile "scan$1-$(rss_kb "$dpid")"
		sleep 1
	done
	echo "daemon-scale: scan $1 did not finish" >&2; exit 1
}
dur_sum() { metric 'exposure_scan_duration_seconds_sum{target="estate"}'; }
db_kb() { du -k "$WORK/exposure.db" | cut -f1; }

await_scan 1
d1=$(dur_sum); peak1=$(peak_kb "$dpid"); db1=$(db_kb)
await_scan 2
t2=$(date +%s)
d2=$(awk -v a="$(dur_sum)" -v b="$d1" 'BEGIN { printf "%.2f", a - b }')
peak2=$(peak_kb "$dpid"); db2=$(db_kb)
kept=$(metric 'exposure_service_detections_total{result="kept",target="estate"}')
full=$(metric 'exposure_service_detections_total{result="full",target="estate"}')
sleep $((t2 + 60 - $(date +%s) > 0 ? t2 + 60 - $(date +%s) : 0))
idle=$(rss_kb "$dpid")
profile idle

check_route
kill -USR1 "$LABPID" # opens $EXTRA
sleep 1
# A scan that was already past 8080 of that address when it opened may miss
# it: the one after must not.
n=$(scans)
addr=${EXTRA%:*}
for want in $((n + 1)) $((n + 2)); do
	before=$(dur_sum)
	await_scan "$want"
	d3=$(awk -v a="$(dur_sum)" -v b="$before" 'BEGIN { printf "%.2f", a - b }')
	opened=$(metric 'exposure_changes_total{kind="port_opened",target="estate"}')
	[ "$opened" -ge 1 ] && break
done
peak3=$(peak_kb "$dpid"); db3=$(db_kb)
# The change's after-state names the service (exposure_service_info is
# capped by the series budget, which an estate exceeds).
svc=$(curl -sf "$durl/api/v1/changes?target=estate" | jq -r --arg a "$addr" \
	'select(.kind == "port_opened" and .address == $a and .port == 8080) | .after.service | "\(.name) \(.product) \(.version)"' | head -1)

echo "$("$WORK/exposure" version | head -1); /$BITS x 22,80,8080 ($OPEN open), -sV on; $(cut -d' ' -f1-3 /proc/loadavg) load"
printf '%-34s %s\n' "baseline scan (s)" "$d1" \
	"unchanged re-scan (s)" "$d2" \
	"re-scan / baseline" "$(awk -v a="$d2" -v b="$d1" 'BEGIN { printf "%.3fx", a / b }')" \
	"services kept / detected in full" "$kept / $full" \
	"peak RSS (MB)" "$(awk -v a="$peak1" -v b="$peak2" -v c="$peak3" 'BEGIN { m = a; if (b > m) m = b; if (c > m) m = c; printf "%.1f", m / 1024 }')" \
	"RSS 60 s after the re-scan (MB)" "$(awk -v a="$idle" 'BEGIN { printf "%.1f", a / 1024 }')" \
	"database after scans 1/2/3 (KB)" "$db1 / $db2 / $db3" \
	"scan with $EXTRA opened (s)" "$d3" \
	"port_opened changes" "$opened" \
	"service of $EXTRA" "${svc:-MISSING}"
[ "$opened" = 1 ] && [ -n "$svc" ] || { echo "daemon-scale: the port opened between scans was not reported with its service" >&2; exit 1; }
