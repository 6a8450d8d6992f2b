# estate.sh: sourced by the daemon-at-scale benchmarks (status-page.sh,
# targets-1000.sh). Needs $work (a scratch directory) and $NAME.
#
#   estate_xml FILE SECOND_OCTET_COUNT START_UNIX
#       writes an nmap XML (-oX) report of 198.18.0.0/16's first
#       SECOND_OCTET_COUNT*256 hosts: 80/tcp (nginx 1.22.1) open on every
#       host, 22/tcp (OpenSSH 9.2p1) on every other one
#   build_exposure                  # $work/exposure, as `make build` ships it
#   daemon_up CONFIG DB [FLAG...]   # starts the daemon on a free loopback port
#                                   # with the extra flags: $dpid, $durl;
#                                   # stopped at exit
#   rss_kb PID                      # resident set size now
#   peak_kb PID                     # peak resident set size (VmHWM)
#   cpu_s PID                       # user+system CPU seconds so far

estate_xml() {
  local file=$1 octets=$2 start=$3
  awk -v n="$octets" -v start="$start" 'BEGIN {
    printf "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    printf "<nmaprun scanner=\"nmap\" args=\"nmap -sS -sV -p 22,80 198.18.0.0/16\" start=\"%d\" version=\"7.93\" xmloutputversion=\"1.05\">\n", start
    printf "<scaninfo type=\"syn\" protocol=\"tcp\" numservices=\"2\" services=\"22,80\"/>\n"
    up = 0
    for (a = 0; a < n; a++) for (b = 0; b < 256; b++) {
      up++
      printf "<host starttime=\"%d\" endtime=\"%d\"><status state=\"up\" reason=\"syn-ack\" reason_ttl=\"64\"/>", start, start + 1
      printf "<address addr=\"198.18.%d.%d\" addrtype=\"ipv4\"/><ports>", a, b
      if (b % 2 == 0)
        printf "<port protocol=\"tcp\" portid=\"22\"><state state=\"open\" reason=\"syn-ack\" reason_ttl=\"64\"/><service name=\"ssh\" product=\"OpenSSH\" version=\"9.2p1 Debian 2+deb12u3\" extrainfo=\"protocol 2.0\" method=\"probed\" conf=\"10\"><cpe>cpe:/a:openbsd:openssh:9.2p1</cpe></service></port>"
      printf "<port protocol=\"tcp\" portid=\"80\"><state state=\"open\" reason=\"syn-ack\" reason_ttl=\"64\"/><service name=\"http\" product=\"nginx\" version=\"1.22.1\" method=\"probed\" conf=\"10\"><cpe>cpe:/a:igor_sysoev:nginx:1.22.1</cpe></service></port>"
      printf "</ports></host>\n"
    }
    printf "<runstats><finished time=\"%d\" elapsed=\"60\" exit=\"success\"/><hosts up=\"%d\" down=\"0\" total=\"%d\"/></runstats>\n", start + 60, up, up
    printf "</nmaprun>\n"
  }' >"$file"
}

build_exposure() {
  export CGO_ENABLED=0
  make -s build BIN="$work/exposure"
}

dpid=
durl=
estate_cleanup() {
  if [ -n "$dpid" ]; then kill "$dpid" 2>/dev/null || true; wait "$dpid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap estate_cleanup EXIT

daemon_up() {
  local cfg=$1 db=$2 port
  shift 2
  port=$(shuf -i 20000-60000 -n 1)
  while ss -Htln "sport = :$port" | grep -q .; do port=$(shuf -i 20000-60000 -n 1); done
  durl="http://127.0.0.1:$port"
  "$work/exposure" daemon --config.file "$cfg" --storage.path "$db" --web.listen-address "127.0.0.1:$port" "$@" \
    >"$work/daemon.log" 2>&1 &
  dpid=$!
  for _ in $(seq 1 300); do
    curl -sf "$durl/-/ready" >/dev/null 2>&1 && return 0
    kill -0 "$dpid" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "$NAME: daemon not ready" >&2
  cat "$work/daemon.log" >&2
  exit 1
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
peak_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
cpu_s() {
  local tck
  tck=$(getconf CLK_TCK)
  awk -v t="$tck" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"
}

# chromium_time URL: seconds headless Chromium takes to load and lay out
# URL (--dump-dom waits for the load event), browser start included. Only
# loopback: a proxy on a closed port for anything else.
chromium_time() {
  local url=$1 profile t0 t1
  profile=$(mktemp -d -p "$work")
  t0=$(date +%s.%N)
  HOME=$profile timeout 300 chromium --user-data-dir="$profile" --headless=new --no-sandbox --disable-gpu \
    --no-first-run --disable-background-networking --disable-component-update --disable-sync \
    --disable-default-apps --disable-extensions --disable-breakpad --disable-domain-reliability \
    --proxy-server=http://127.0.0.1:9 --proxy-bypass-list=127.0.0.1 \
    --dump-dom "$url" >"$profile.dom" 2>/dev/null || { echo "timeout"; return; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l | xargs printf '%.2f'
}
