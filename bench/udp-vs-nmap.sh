#!/usr/bin/env bash
# udp-vs-nmap.sh: a UDP sweep of nmap's top 1,000 UDP ports of one lab host
# running real UDP daemons (lab.UDPDaemons: named, snmpd, tftpd-hpa,
# memcached -U, ntpsec, freeradius, openvpn, rpcbind, nmbd, krb5kdc,
# charon, coturn), exposure against nmap -sU -sV, in one run; then the
# UDP services alone: the ports with a socket in the host (ss -lun, as
# labctl reports them), `nmap -sU -sV -p <them>` against
# `exposure scan --sV -p U:<them>`, with a table of service, product and
# version per port and the time ratio.
#
#   sudo bench/udp-vs-nmap.sh [HOST_TIMEOUT]   # default 300s
#   sudo bench/udp-vs-nmap.sh --services       # the services alone only
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
for b in nmap jq go xmllint; do
  command -v "$b" >/dev/null || { echo "udp-vs-nmap: $b is not installed" >&2; exit 2; }
done
services_only=
if [ "${1:-}" = --services ]; then services_only=1; shift; fi
cap=${1:-300s}

NAME=udp-vs-nmap
# shellcheck source=bench/onehost.sh
. bench/onehost.sh
onehost_up --udp-daemons
echo "lab host $addr on $bridge ($(jq -r '.hosts[0].daemons | join(" ")' "$work/lab.json"))"

udp_open=$(jq -r '.hosts[0].udp_open | map(tostring) | join(",")' "$work/lab.json")
echo "UDP ports with a socket (ss -lune): $udp_open"

if [ -z "$services_only" ]; then
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
fi

# The UDP services alone.
check_route
t0=$(date +%s.%N)
"$work/exposure" scan -n --sV -e "$bridge" -p "U:${udp_open//,/,U:}" --format json "$addr" >"$work/ours-sv.json"
t1=$(date +%s.%N)
check_route
t1b=$(date +%s.%N)
nmap -sU -sV -Pn -n -e "$bridge" -p "$udp_open" -oX "$work/nmap-sv.xml" "$addr" >/dev/null
t2=$(date +%s.%N)
ours=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
theirs=$(awk -v a="$t1b" -v b="$t2" 'BEGIN{printf "%.2f", b-a}')
echo
echo "| port | nmap -sU -sV | exposure --sV | agree |"
echo "| --- | --- | --- | --- |"
agree=0 total=0
for p in ${udp_open//,/ }; do
  n=$(xmllint --xpath "string(//port[@protocol='udp' and @portid='$p']/state/@state)" "$work/nmap-sv.xml")
  for f in name product version extrainfo; do
    declare "n_$f=$(xmllint --xpath "string(//port[@protocol='udp' and @portid='$p']/service/@$f)" "$work/nmap-sv.xml")"
  done
  o=$(jq -r --argjson p "$p" '.hosts[].ports[] | select(.port==$p and .protocol=="udp") | .state' "$work/ours-sv.json")
  for f in name product version info; do
    declare "o_$f=$(jq -r --argjson p "$p" --arg f "$f" '.hosts[].ports[] | select(.port==$p and .protocol=="udp") | .service[$f] // ""' "$work/ours-sv.json")"
  done
  [ -n "$o" ] || o=closed # a snapshot leaves closed UDP ports out
  # Agreement: the same state; for an open port the same service name, the
  # same product where nmap names one and the same version where nmap has
  # one (for a port that did not answer, nmap's name is its port table's).
  # "worded" is an agreement in other words: nmap's product string holds
  # exposure's product and version (nmap writes coturn's raw SOFTWARE
  # attribute, "Coturn-4.6.1 'Gorst'", and joins two SNMP probes' answers
  # into one product, where exposure names the product and version apart).
  verdict=yes
  if [ "$n" != "$o" ]; then verdict=no
  elif [ "$n" != open ]; then verdict=yes
  elif [ "$n_name" != "$o_name" ]; then verdict=no
  elif [ -n "$n_product" ] && [ "$n_product" != "$o_product" ]; then
    verdict=no
    np=${n_product,,}
    if [ -n "$o_product" ] && [ -z "$n_version" ] && [[ $np == *"${o_product,,}"* ]] && [[ $np == *"${o_version,,}"* ]]; then
      verdict=worded
    fi
  elif [ -n "$n_version" ] && [ "$n_version" != "$o_version" ]; then verdict=no
  fi
  total=$((total + 1))
  [ "$verdict" != no ] && agree=$((agree + 1))
  echo "| $p | $n $n_name $n_product $n_version${n_extrainfo:+ ($n_extrainfo)} | $o $o_name $o_product $o_version${o_info:+ ($o_info)} | $verdict |"
done
echo "exposure scan --sV -p U:$udp_open: ${ours}s; nmap -sU -sV -p $udp_open: ${theirs}s"
awk -v a="$ours" -v b="$theirs" -v g="$agree" -v t="$total" 'BEGIN{printf "services alone: %d of %d ports agree; ratio %.4fx of nmap'"'"'s time\n", g, t, a/b}'
