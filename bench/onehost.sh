# onehost.sh: sourced by the benchmarks that scan one lab host (sv-vs-nmap.sh,
# udp-vs-nmap.sh). Set NAME (for messages) before sourcing; then
#
#   onehost_up LABCTL_UP_ARGS...   # build, bring the lab up, set addr and bridge
#   check_route [ADDR]             # abort unless ADDR ($addr) routes straight into bridge
#
# HOSTS (default 1) is how many lab hosts labctl creates; addrs lists them all.
#
# The lab (labctl, by its PID) and the work directory go when the script exits.

work=$(mktemp -d)
labpid=
cleanup() {
  if [ -n "$labpid" ]; then kill "$labpid" 2>/dev/null || true; wait "$labpid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

onehost_up() {
  export CGO_ENABLED=0
  go build -o "$work/labctl" ./internal/lab/labctl
  make -s build BIN="$work/exposure" # as `make build` ships it, version stamped
  "$work/labctl" up --hosts "${HOSTS:-1}" "$@" --open-ports "" --out "$work/lab.json" >/dev/null 2>"$work/labctl.log" &
  labpid=$!
  for _ in $(seq 1 600); do
    [ -s "$work/lab.json" ] && break
    kill -0 "$labpid" 2>/dev/null || { cat "$work/labctl.log" >&2; exit 1; }
    sleep 0.2
  done
  [ -s "$work/lab.json" ] || { echo "$NAME: lab did not come up" >&2; exit 1; }
  addr=$(jq -r '.hosts[0].addr' "$work/lab.json")
  addrs=$(jq -r '[.hosts[].addr] | join(" ")' "$work/lab.json")
  bridge=$(jq -r '.bridge' "$work/lab.json")
}

# check_route: aborts unless the kernel routes $addr directly (no gateway)
# into the lab's bridge. `ip route get` sends nothing.
check_route() {
  local r a=${1:-$addr}
  if ! r=$(ip -j route get "$a"); then
    echo "$NAME: ip route get $a failed; aborting" >&2; exit 1
  fi
  if [ "$(jq -r --arg b "$bridge" '.[0] | .dev == $b and .gateway == null' <<<"$r")" != true ]; then
    echo "$NAME: $a does not route into lab bridge $bridge ($r); aborting" >&2; exit 1
  fi
}
