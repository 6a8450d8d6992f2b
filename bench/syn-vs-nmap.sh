#!/usr/bin/env bash
# syn-vs-nmap.sh: the same lab workloads through `nmap -sS -T4` and through
# `exposure scan` (SYN engine), in one run. Prints both wall times, the
# ratio, peak RSS, and checks that both found exactly the open ports the lab
# created.
#
# Workloads (issue 3):
#   1. all 65,535 ports of one lab host;
#   2. 254 lab hosts x nmap's top 1,000 ports;
#   3. and 4. the same with 5% random inbound loss on every host.
#
# Needs root, nmap (.ci/install-deps installs it), iproute2, iptables, jq and
# GNU time. Both tools run with -n (no reverse DNS): the lab's addresses have
# no PTR records and the benchmark sends packets to lab hosts only.
#
# Usage: sudo bench/syn-vs-nmap.sh [--hosts N] [--runs N] [--no-loss]
#
# The machine is often shared: each lossless figure is the median of --runs
# runs (default 3) of each tool; under loss
# nmap runs once (it takes minutes there).
set -euo pipefail

HOSTS=254
LOSS=1
RUNS=3
while [ $# -gt 0 ]; do
	case "$1" in
	--hosts) HOSTS=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--no-loss) LOSS=0; shift ;;
	*) echo "usage: $0 [--hosts N] [--runs N] [--no-loss]" >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "syn-vs-nmap: needs root (raw sockets and network namespaces)" >&2
	exit 1
fi
for b in nmap jq /usr/bin/time ip iptables; do
	command -v "$b" >/dev/null || { echo "syn-vs-nmap: $b is missing (see .ci/install-deps)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/syn-vs-nmap.XXXXXX)
LABPID=""
cleanup() {
	if [ -n "$LABPID" ]; then
		kill -TERM "$LABPID" 2>/dev/null || true
		wait "$LABPID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# labctl is `go run ./internal/lab/labctl`, built first so that the signal
# that tears the lab down reaches labctl itself, not the go command.
go build -o "$WORK/exposure" ./cmd/exposure
go build -o "$WORK/labctl" ./internal/lab/labctl

lab_up() { # lab_up LOSS: starts a lab, waits for its JSON in $WORK/lab.json
	rm -f "$WORK/lab.json"
	"$WORK/labctl" up --hosts "$HOSTS" --open-ports 22,80,rand:3 --seed 1 --loss "$1" \
		--for 60m --out "$WORK/lab.json" >/dev/null 2>"$WORK/labctl.log" &
	LABPID=$!
	for _ in $(seq 1200); do
		[ -s "$WORK/lab.json" ] && return 0
		kill -0 "$LABPID" 2>/dev/null || { cat "$WORK/labctl.log" >&2; exit 1; }
		sleep 0.25
	done
	echo "syn-vs-nmap: lab did not come up" >&2
	exit 1
}

lab_down() {
	kill -TERM "$LABPID"
	wait "$LABPID" || true
	LABPID=""
}

nmap_open() { # grepable output -> "addr port" lines
	sed -n 's/^Host: \([^ ]*\) .*Ports: \(.*\)$/\1 \2/p' "$1" |
		while read -r addr ports; do
			echo "$ports" | tr ',' '\n' | sed -n 's|^ *\([0-9]*\)/open/tcp.*|\1|p' |
				while read -r p; do echo "$addr $p"; done
		done | sort -u
}

exposure_open() { # snapshot JSON -> "addr port" lines
	jq -r '.hosts[] | .address as $a | .ports[] | select(.state == "open") | "\($a) \(.port)"' "$1" | sort -u
}

truth() { # truth FIRST_N: open ports of the first N lab hosts
	jq -r --argjson n "$1" '.hosts[:$n][] | .addr as $a | .open[] | "\($a) \(.)"' "$WORK/lab.json" | sort -u
}

# measure TOOL RUNS TRUTH ARGS...: runs nmap or exposure RUNS times and
# prints "median_seconds max_rss_kb verdict", the verdict "exact" only if
# every run found exactly the open ports in TRUTH.
measure() {
	local tool=$1 runs=$2 want=$3; shift 3
	local out="$WORK/out" verdict="exact" i
	: >"$WORK/times"
	for i in $(seq "$runs"); do
		if [ "$tool" = nmap ]; then
			/usr/bin/time -f "%e %M" -o "$WORK/t" nmap -sS -T4 -n -oG "$out" "$@" >/dev/null
			nmap_open "$out" >"$WORK/open"
		else
			/usr/bin/time -f "%e %M" -o "$WORK/t" "$WORK/exposure" scan -n --format json "$@" >"$out" 2>"$WORK/exposure.log"
			exposure_open "$out" >"$WORK/open"
		fi
		cat "$WORK/t" >>"$WORK/times"
		if ! diff -q "$want" "$WORK/open" >/dev/null; then
			verdict="MISMATCH"
			diff "$want" "$WORK/open" | head -5 >&2
		fi
	done
	local med rss
	med=$(sort -n "$WORK/times" | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }')
	rss=$(sort -k2 -n "$WORK/times" | tail -1 | cut -d' ' -f2)
	echo "$med $rss $verdict"
}

RESULTS="$WORK/results"
: >"$RESULTS"

run_workloads() { # run_workloads LABEL NMAP_RUNS
	local label=$1 nruns=$2
	local first n
	first=$(jq -r '.hosts[0].addr' "$WORK/lab.json")
	jq -r '.hosts[].addr' "$WORK/lab.json" >"$WORK/targets"
	n=$(wc -l <"$WORK/targets")

	truth 1 >"$WORK/truth1"
	local nm ex
	nm=$(measure nmap "$nruns" "$WORK/truth1" -p- "$first")
	ex=$(measure exposure "$RUNS" "$WORK/truth1" -p - "$first")
	echo "1 host x 65535 ports$label|$nm|$ex" >>"$RESULTS"

	truth "$n" >"$WORK/truthN"
	nm=$(measure nmap "$nruns" "$WORK/truthN" --top-ports 1000 -iL "$WORK/targets")
	# shellcheck disable=SC2046
	ex=$(measure exposure "$RUNS" "$WORK/truthN" -p top:1000 $(cat "$WORK/targets"))
	echo "$n hosts x top 1000$label|$nm|$ex" >>"$RESULTS"
}

echo "syn-vs-nmap: $(nmap --version | head -1); exposure $("$WORK/exposure" version)" >&2
echo "syn-vs-nmap: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
lab_up 0
run_workloads "" "$RUNS"
lab_down
if [ "$LOSS" = 1 ]; then
	# nmap needs minutes under loss: one run of it.
	lab_up 0.05
	run_workloads ", 5% loss" 1
	lab_down
fi

echo "median of $RUNS runs (nmap once under loss); RSS is the peak over the runs"
printf '%-34s %9s %9s %7s %10s %10s  %-8s %-8s\n' workload nmap_s expo_s ratio nmap_rss expo_rss nmap exposure
while IFS='|' read -r name nt et; do
	read -r ns nr nok <<<"$nt"
	read -r es er eok <<<"$et"
	ratio=$(awk -v a="$es" -v b="$ns" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
	printf '%-34s %9s %9s %6sx %8sKB %8sKB  %-8s %-8s\n' "$name" "$ns" "$es" "$ratio" "$nr" "$er" "$nok" "$eok"
done <"$RESULTS"
