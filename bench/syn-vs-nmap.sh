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
# Two labs (labctl) are up at once, one clean and one with 5% loss, so that
# exposure's clean and lossy runs can alternate and see the same machine
# load: the figures are medians of --runs runs (default 3). nmap runs --runs
# times on the clean lab and once on the lossy one (it takes minutes there).
#
# Each run also measures the workload's send floor (scanner/floor_test.go):
# its SYNs sent as fast as the kernel takes them, from one raw socket per
# CPU, with nothing received or tracked, on the clean lab.
# The targets' TCP stacks answer inside the senders' system calls, on this
# machine's CPUs, so no SYN scanner can take less time here than the floor;
# floor/nmap is the least ratio to nmap this machine allows.
#
# Needs root, nmap (.ci/install-deps installs it), iproute2, iptables, jq and
# GNU time. Both tools run with -n (no reverse DNS): the lab's addresses have
# no PTR records and the benchmark sends packets to lab hosts only. Both are
# bound to the lab's bridge (-e BRIDGE: were the lab torn down mid-run, no
# probe could leave through another interface), and right before each run
# `ip route get` must lead every target straight into that bridge, or the
# script aborts.
#
# Usage: sudo bench/syn-vs-nmap.sh [--hosts N] [--runs N] [--no-loss]
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
LABPIDS=""
cleanup() {
	for pid in $LABPIDS; do
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# labctl is `go run ./internal/lab/labctl`, built first so that the signal
# that tears the lab down reaches labctl itself, not the go command.
make -s build BIN="$WORK/exposure" # as `make build` ships it, version stamped
go build -o "$WORK/labctl" ./internal/lab/labctl
# The send floor (scanner/floor_test.go) is a Go benchmark in its own lab.
go test -c -o "$WORK/scanner.test" ./scanner

lab_up() { # lab_up NAME LOSS: starts a lab and waits for $WORK/NAME.json
	local json="$WORK/$1.json"
	"$WORK/labctl" up --hosts "$HOSTS" --open-ports 22,80,rand:3 --seed 1 --loss "$2" \
		--for 60m --out "$json" >/dev/null 2>"$WORK/$1.log" &
	local pid=$!
	LABPIDS="$LABPIDS $pid"
	for _ in $(seq 1200); do
		if [ -s "$json" ]; then
			jq -r '.hosts[0].addr' "$json" >"$WORK/$1.first"
			jq -r '.hosts[].addr' "$json" >"$WORK/$1.targets"
			jq -r '.bridge' "$json" >"$WORK/$1.bridge"
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || { cat "$WORK/$1.log" >&2; exit 1; }
		sleep 0.25
	done
	echo "syn-vs-nmap: lab $1 did not come up" >&2
	exit 1
}

# check_routes LAB: aborts unless the kernel routes every target of LAB
# directly (no gateway) into LAB's bridge. `ip route get` sends nothing.
check_routes() {
	local bridge n out bad
	bridge=$(cat "$WORK/$1.bridge")
	n=$(wc -l <"$WORK/$1.targets")
	if ! out=$(sed 's/^/route get /' "$WORK/$1.targets" | ip -j -batch -); then
		echo "syn-vs-nmap: ip route get failed for lab $1; aborting" >&2
		exit 1
	fi
	bad=$(jq -r --arg b "$bridge" '.[] | select(.dev != $b or .gateway != null)
		| "\(.dst) dev \(.dev) via \(.gateway // "-")"' <<<"$out")
	if [ -n "$bad" ] || [ "$(jq -s 'length' <<<"$out")" != "$n" ]; then
		echo "syn-vs-nmap: lab $1 targets do not all route into bridge $bridge; aborting:" >&2
		echo "${bad:-(answers for $(jq -s 'length' <<<"$out") of $n targets)}" | head -5 >&2
		exit 1
	fi
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

truth() { # truth LAB N: open ports of the first N hosts of a lab
	jq -r --argjson n "$2" '.hosts[:$n][] | .addr as $a | .open[] | "\($a) \(.)"' "$WORK/$1.json" | sort -u
}

# measure TOOL KEY TRUTH LAB ARGS...: runs nmap or exposure once on LAB,
# bound to its bridge after checking its routes, appends "seconds rss_kb"
# to $WORK/KEY.times, and a line to $WORK/KEY.bad unless it found exactly
# the open ports in TRUTH.
measure() {
	local tool=$1 key=$2 want=$3 lab=$4
	shift 4
	local out="$WORK/out" bridge
	bridge=$(cat "$WORK/$lab.bridge")
	check_routes "$lab"
	if [ "$tool" = nmap ]; then
		/usr/bin/time -f "%e %M" -o "$WORK/t" nmap -sS -T4 -n -e "$bridge" -oG "$out" "$@" >/dev/null
		nmap_open "$out" >"$WORK/open"
	else
		/usr/bin/time -f "%e %M" -o "$WORK/t" "$WORK/exposure" scan -n -e "$bridge" --format json "$@" >"$out" 2>"$WORK/exposure.log"
		exposure_open "$out" >"$WORK/open"
	fi
	cat "$WORK/t" >>"$WORK/$key.times"
	if ! diff -q "$want" "$WORK/open" >/dev/null; then
		echo MISMATCH >>"$WORK/$key.bad"
		diff "$want" "$WORK/open" | head -5 >&2
	fi
}

summary() { # summary KEY: "median_seconds peak_rss_kb verdict"
	local verdict=exact
	[ -s "$WORK/$1.bad" ] && verdict=MISMATCH
	sort -n "$WORK/$1.times" | awk -v v="$verdict" '
		{ t[NR] = $1; if ($2 > rss) rss = $2 }
		END { printf "%s %s %s\n", t[int((NR + 1) / 2)], rss, v }'
}

# Argument lists per workload and lab.
args_one_nmap() { echo "-p- $(cat "$WORK/$1.first")"; }
args_one_expo() { echo "-p - $(cat "$WORK/$1.first")"; }
args_all_nmap() { echo "--top-ports 1000 -iL $WORK/$1.targets"; }
args_all_expo() { echo "-p top:1000 $(tr '\n' ' ' <"$WORK/$1.targets")"; }

# floor KEY BENCH: the send floor of a workload: every SYN sent as fast as
# the kernel takes it, one raw socket per CPU bound to the clean lab's
# bridge, nothing received or tracked (BenchmarkLabSendFloor*). On a lab the
# targets answer inside the senders' system calls, on the same CPUs, so no
# SYN scanner can beat this time here. Appends seconds to $WORK/KEY.times.
floor() {
	local ns
	check_routes lab0
	ns=$(cd scanner && EXPOSURE_BENCH_LAB="$WORK/lab0.json" "$WORK/scanner.test" -test.run '^$' -test.bench "^$2\$" -test.benchtime 1x 2>&1 |
		awk -v b="$2" '$1 ~ "^" b "(-[0-9]+)?$" { print $3 }')
	[ -n "$ns" ] || { echo "syn-vs-nmap: $2 did not run" >&2; exit 1; }
	awk -v ns="$ns" 'BEGIN { printf "%.2f 0\n", ns / 1e9 }' | tee -a "$WORK/$1.times" |
		sed "s/^\([^ ]*\) .*/syn-vs-nmap: $2: \1 s/" >&2
}

floor_bench_one() { echo BenchmarkLabSendFloorAllPorts; }
floor_bench_all() { echo BenchmarkLabSendFloor254HostsTop1000; }

# workload KEY N: nmap RUNS times on the clean lab; exposure RUNS times on
# the clean and the lossy lab alternately; nmap once on the lossy lab.
workload() {
	local key=$1 n=$2 i
	truth lab0 "$n" >"$WORK/$key.truth0"
	[ "$LOSS" = 1 ] && truth lab5 "$n" >"$WORK/$key.truth5"
	for i in $(seq "$RUNS"); do
		# shellcheck disable=SC2046
		measure nmap "$key.nmap0" "$WORK/$key.truth0" lab0 $(args_"$key"_nmap lab0)
	done
	for i in $(seq "$RUNS"); do
		# shellcheck disable=SC2046
		measure exposure "$key.expo0" "$WORK/$key.truth0" lab0 $(args_"$key"_expo lab0)
		if [ "$LOSS" = 1 ]; then
			# shellcheck disable=SC2046
			measure exposure "$key.expo5" "$WORK/$key.truth5" lab5 $(args_"$key"_expo lab5)
		fi
		if [ "$key" = one ] || [ "$HOSTS" = 254 ]; then
			floor "$key.floor" "$(floor_bench_"$key")"
		fi
	done
	if [ "$LOSS" = 1 ]; then
		# shellcheck disable=SC2046
		measure nmap "$key.nmap5" "$WORK/$key.truth5" lab5 $(args_"$key"_nmap lab5)
	fi
	return 0
}

# The first lines of both --version outputs (sed reads them to the end, so
# neither gets a broken pipe).
VERSIONS="$(nmap --version | sed -n 1p); $("$WORK/exposure" version | sed -n 1p)"
echo "syn-vs-nmap: $VERSIONS" >&2
echo "syn-vs-nmap: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
lab_up lab0 0
[ "$LOSS" = 1 ] && lab_up lab5 0.05
N=$(wc -l <"$WORK/lab0.targets")
workload one 1
workload all "$N"

row() { # row NAME NMAPKEY EXPOKEY [BASEKEY]
	local ns nr nok es er eok extra="" fl="-" flr="-"
	read -r ns nr nok <<<"$(summary "$2")"
	read -r es er eok <<<"$(summary "$3")"
	if [ $# -eq 4 ]; then
		local bs
		read -r bs _ _ <<<"$(summary "$4")"
		extra=$(awk -v a="$es" -v b="$bs" 'BEGIN { printf "%.2fx own clean time", a / b }')
	elif [ -s "$WORK/${3%.expo0}.floor.times" ]; then
		read -r fl _ _ <<<"$(summary "${3%.expo0}.floor")"
		flr=$(awk -v a="$fl" -v b="$ns" 'BEGIN { printf "%.2fx", a / b }')
	fi
	printf '%-30s %8s %8s %6sx %9s %9s  %-8s %-8s %7s %7s %s\n' "$1" "$ns" "$es" \
		"$(awk -v a="$es" -v b="$ns" 'BEGIN { printf "%.2f", a / b }')" "${nr}KB" "${er}KB" "$nok" "$eok" "$fl" "$flr" "$extra"
}

echo "$VERSIONS"
echo "median of $RUNS runs (nmap once under loss); RSS is the peak over the runs; $(cut -d' ' -f1-3 /proc/loadavg) load"
echo "floor: every SYN sent as fast as the kernel takes it, nothing received (BenchmarkLabSendFloor*)"
printf '%-30s %8s %8s %7s %9s %9s  %-8s %-8s %7s %7s %s\n' workload nmap_s expo_s ratio nmap_rss expo_rss nmap exposure floor_s floor/nmap loss_cost
row "1 host x 65535 ports" one.nmap0 one.expo0
row "$N hosts x top 1000" all.nmap0 all.expo0
if [ "$LOSS" = 1 ]; then
	row "1 host x 65535, 5% loss" one.nmap5 one.expo5 one.expo0
	row "$N hosts x top 1000, 5% loss" all.nmap5 all.expo5 all.expo0
fi
