#!/usr/bin/env bash
# status-page.sh: the daemon's status page and read API with the estate of
# issue 15 (65,536 hosts of 198.18.0.0/16, 80 open everywhere, 22 on half:
# 98,304 open ports), against nmap's own report of the same scan (its XML
# through nmap.xsl), each loaded in headless Chromium.
#
# The estate comes from an nmap XML report written by estate.sh and read
# with `exposure import`; the daemon starts on that store with a target
# that never runs in the benchmark (@every 24h, no run at start; its hosts
# are 127.0.0.1 anyway), so no packet is sent: the page is rendered from
# the imported snapshot, as after a restart. Needs chromium, xsltproc, curl,
# jq, bc. Usage: bench/status-page.sh [RUNS]
set -euo pipefail
NAME=status-page
runs=${1:-3}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
. bench/estate.sh

build_exposure
estate_xml "$work/estate.xml" 256 1764050400
t0=$(date +%s.%N)
"$work/exposure" import --storage.path "$work/exposure.db" --target estate "$work/estate.xml" >/dev/null
t1=$(date +%s.%N)
printf 'import of 98,304 open ports: %.1f s, database %d bytes (%.0f B per open port)\n' \
  "$(echo "$t1 - $t0" | bc -l)" "$(stat -c %s "$work/exposure.db")" "$(echo "$(stat -c %s "$work/exposure.db") / 98304" | bc -l)"

cat >"$work/exposure.yml" <<YML
global:
  run_at_start: false
targets:
  - name: estate
    hosts: [127.0.0.1]
    ports: "22,80"
    schedule: "@every 24h"
YML
daemon_up "$work/exposure.yml" "$work/exposure.db"
printf 'daemon idle with the estate loaded: RSS %d kB\n' "$(rss_kb "$dpid")"

curl -sf "$durl/" -o "$work/page.html"
grep -q '98304</b><span>open ports' "$work/page.html" || { echo "$NAME: the page does not show 98,304 open ports" >&2; exit 1; }
for path in "/" "/?limit=5000" "/?offset=98000&limit=500" "/api/v1/snapshot?target=estate&limit=1000"; do
  t=$(curl -sf -o "$work/body" -w '%{time_total}' "$durl$path")
  printf 'GET %-42s %6.3f s  %8d bytes\n' "$path" "$t" "$(stat -c %s "$work/body")"
done
t=$(curl -sf -o "$work/body" -w '%{time_total}' "$durl/api/v1/snapshot?target=estate")
printf 'GET %-42s %6.3f s  %8d bytes (whole snapshot)\n' "/api/v1/snapshot?target=estate" "$t" "$(stat -c %s "$work/body")"

for path in "/" "/?limit=5000"; do
  ts=()
  for _ in $(seq 1 "$runs"); do ts+=("$(chromium_time "$durl$path")"); done
  printf 'chromium exposure %-14s %s s (runs: %s)\n' "$path" "$(printf '%s\n' "${ts[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p")" "${ts[*]}"
done
printf 'chromium about:blank (browser start) %s s\n' "$(chromium_time about:blank)"
# nmap's report of the scan: nmap.xsl through xsltproc, then Chromium. For
# 65,536 hosts xsltproc runs for more than 15 minutes, so it gets a cap.
xsl_cap=${XSL_CAP:-120}
t0=$(date +%s.%N)
if timeout "$xsl_cap" xsltproc /usr/share/nmap/nmap.xsl "$work/estate.xml" >"$work/nmap-report.html"; then
  t1=$(date +%s.%N)
  printf 'xsltproc nmap.xsl of the same scan: %.1f s, %d bytes\n' "$(echo "$t1 - $t0" | bc -l)" "$(stat -c %s "$work/nmap-report.html")"
  printf 'chromium nmap.xsl report: %s s\n' "$(chromium_time "file://$work/nmap-report.html")"
else
  printf 'xsltproc nmap.xsl of the same scan: did not finish within %d s (capped)\n' "$xsl_cap"
fi
printf 'daemon after the requests: RSS %d kB, peak %d kB\n' "$(rss_kb "$dpid")" "$(peak_kb "$dpid")"
