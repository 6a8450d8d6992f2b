#!/usr/bin/env bash
# udp-vs-nmap.sh: a UDP sweep of nmap's top 1,000 UDP ports of one lab host
# running real UDP daemons (lab.UDPDaemons: named, snmpd, tftpd-hpa,
# memcached -U), exposure against nmap -sU -sV, in one run.
#
#   sudo bench/udp-vs-nmap.sh [HOST_TIMEOUT]   # default 300s
#
# nmap waits for the ICMP port unreachables Linux rate-limits to about one
# a second per destination, so a full top-1000 run takes tens of minutes;
# it is capped with --host-timeout HOST_TIMEOUT (nmap then reports nothing
# for the host, and its time is the cap: the ratio printed is a bound that
# flatters nmap). exposure's side is `exposure scan --sV -p udp-top:1000`. Both
# tools are bound to the lab's bridge (-e BRIDGE), and right before each
# run `ip route get` must lead the host's address into that bridge, or the
# script aborts.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then echo "udp-vs-nmap: needs root for the lab" >&2; exit 2; fi
for b in nmap jq go; do
  command -v "$b" >/dev/null || { echo "udp-vs-nmap: $b is not installed" >&2; exit 2; }
done
cap=${1:-300s}

NAME=udp-vs-nmap
# shellcheck source=bench/onehost.sh
. bench/onehost.sh
onehost_up --udp-daemons
echo "lab host $addr on $bridge ($(jq -r '.hosts[0].daemons | join(" ")' "$work/lab.json"))"

check_route
t0=$(date +%s.%N)
"$work/exposure" scan -n --sV -e "$bridge" -p udp-top:1000 --format json "$addr" >"$work/ours.json"
t1=$(date +%s.%N)
check_route
t1b=$(date +%s.%N)
nmap -sU -sV -Pn -n -e "$bridge" --top-ports 1000 --host-timeout "$cap" -oX "$work/nmap.xml" "$addr" >/dev/null
t2=$(date +%s.%N)

ours=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
theirs=$(awk -v a="$t1b" -v b="$t2" 'BEGIN{printf "%.2f", b-a}')
echo "exposure scan --sV -p udp-top:1000: ${ours}s"
jq -r '.hosts[].ports[] | select(.state=="open") | "  \(.port)/udp open \(.service.name // "") \(.service.product // "") \(.service.version // "")"' "$work/ours.json"
echo "nmap -sU -sV --top-ports 1000 --host-timeout $cap: ${theirs}s"
if grep -q 'state="open"' "$work/nmap.xml"; then
  grep -o '<port protocol="udp" portid="[0-9]*"><state state="open"[^>]*>' "$work/nmap.xml" | sed 's/.*portid="\([0-9]*\)".*/  \1\/udp open/'
else
  echo "  (no open port reported: nmap hit its host timeout)"
fi
awk -v a="$ours" -v b="$theirs" 'BEGIN{printf "ratio: %.4fx of nmap'"'"'s time\n", a/b}'
