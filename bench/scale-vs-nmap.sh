#!/usr/bin/env bash
# scale-vs-nmap.sh: a /16 through `nmap -sS -T4` and through `exposure scan`
# in one run (issue 15). The scale lab (labctl scale, lab.ScaleLab) is one
# network namespace that answers for all 65,536 addresses of a /16 through a
# local route, routed from the root namespace via one gateway on its veth:
# port 80 is open on every address, 22 on the even ones (an iptables reset
# closes it on the odd ones): 98,304 open ports.
#
# Both tools scan -p 22,80 with -n (no reverse DNS), bound to the lab's veth
# (-e), after `ip route get` has shown that the prefix routes via the lab's
# gateway into that veth. Prints the median wall time of --runs runs
# (default 3), the ratio, the peak RSS over the runs (GNU time), and
# whether each tool found exactly the open ports of the truth labctl wrote.
#
# Needs root, nmap, iproute2, iptables, jq and GNU time.
#
# Usage: sudo bench/scale-vs-nmap.sh [--bits N] [--runs N]
set -euo pipefail

BITS=16
RUNS=3
while [ $# -gt 0 ]; do
	case "$1" in
	--bits) BITS=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	*) echo "usage: $0 [--bits N] [--runs N]" >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "scale-vs-nmap: needs root (raw sockets and network namespaces)" >&2
	exit 1
fi
for b in nmap jq /usr/bin/time ip iptables; do
	command -v "$b" >/dev/null || { echo "scale-vs-nmap: $b is missing (see .ci/install-deps)" >&2; exit 1; }
done

NAME=scale-vs-nmap
WORK=$(mktemp -d /tmp/scale-vs-nmap.XXXXXX)
# shellcheck source=bench/scalelab.sh
. bench/scalelab.sh
cleanup() {
	scalelab_down
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

scalelab_up "$BITS"

nmap_open() { # grepable output -> "addr port" lines
	sed -n 's/^Host: \([^ ]*\) .*Ports: \(.*\)$/\1 \2/p' "$1" |
		awk '{ addr = $1; $1 = ""; n = split($0, ps, ","); for (i = 1; i <= n; i++) {
			split(ps[i], f, "/"); gsub(/ /, "", f[1]); if (f[2] == "open") print addr, f[1] } }' | sort -u
}

exposure_open() { # snapshot JSON -> "addr port" lines
	jq -r '.hosts[] | .address as $a | .ports[] | select(.state == "open") | "\($a) \(.port)"' "$1" | sort -u
}

measure() { # measure TOOL: one run, appends "seconds rss_kb" to TOOL.times
	local tool=$1 out="$WORK/out"
	check_route
	if [ "$tool" = nmap ]; then
		/usr/bin/time -f "%e %M" -o "$WORK/t" nmap -sS -T4 -n -e "$IFACE" -p 22,80 -oG "$out" "$PREFIX" >/dev/null
		nmap_open "$out" >"$WORK/open"
	else
		/usr/bin/time -f "%e %M" -o "$WORK/t" "$WORK/exposure" scan -n -e "$IFACE" -p 22,80 --format json "$PREFIX" \
			>"$out" 2>"$WORK/exposure.log"
		exposure_open "$out" >"$WORK/open"
	fi
	cat "$WORK/t" >>"$WORK/$tool.times"
	if ! diff -q "$WORK/truth" "$WORK/open" >/dev/null; then
		echo MISMATCH >>"$WORK/$tool.bad"
		echo "scale-vs-nmap: $tool: $(diff "$WORK/truth" "$WORK/open" | grep -c '^[<>]') lines differ from the truth" >&2
	fi
	rm -f "$out"
}

summary() { # summary TOOL: "median_seconds peak_rss_kb verdict"
	local verdict=exact
	[ -s "$WORK/$1.bad" ] && verdict=MISMATCH
	sort -n "$WORK/$1.times" | awk -v v="$verdict" '{ t[NR] = $1; if ($2 > m) m = $2 }
		END { printf "%s %s %s\n", t[int((NR + 1) / 2)], m, v }'
}

# Alternating, so both tools see the same machine load.
for _ in $(seq "$RUNS"); do
	measure nmap
	measure exposure
done
read -r ns nr nok <<<"$(summary nmap)"
read -r es er eok <<<"$(summary exposure)"
echo "$(nmap --version | head -1); $("$WORK/exposure" version | head -1)"
echo "median of $RUNS runs; RSS is the peak over the runs; $(cut -d' ' -f1-3 /proc/loadavg) load"
printf '%-28s %8s %8s %7s %9s %9s  %-8s %-8s\n' workload nmap_s expo_s ratio nmap_rss expo_rss nmap exposure
printf '%-28s %8s %8s %6sx %9s %9s  %-8s %-8s\n' "/$BITS x 22,80 ($OPEN open)" "$ns" "$es" \
	"$(awk -v a="$es" -v b="$ns" 'BEGIN { printf "%.2f", a / b }')" "${nr}KB" "${er}KB" "$nok" "$eok"
