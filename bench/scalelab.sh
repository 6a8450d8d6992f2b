# scalelab.sh: sourced by the benchmarks that run on the scale lab
# (scale-vs-nmap.sh, daemon-scale.sh). Needs $WORK (a scratch directory, the
# script's to remove) and $NAME (for messages).
#
#   scalelab_up BITS    # builds exposure and labctl into $WORK, brings up a
#                       # /BITS scale lab (labctl scale) and sets PREFIX,
#                       # IFACE, GW, OPEN, EXTRA (the address:port SIGUSR1 to
#                       # $LABPID opens) and $WORK/truth (the open pairs)
#   check_route         # aborts unless the prefix routes via GW into IFACE
#   scalelab_down       # stops the lab (by its PID), for the script's trap
#
# The scale lab (lab.ScaleLab) is one network namespace that answers for a
# whole prefix of 198.18.0.0/15 through a local route, routed from the root
# namespace via one gateway on its veth: port 80 is open on every address
# (an nginx answer), 22 on the even ones (an OpenSSH banner; an iptables
# reset closes it on the odd ones).

LABPID=
scalelab_down() {
	if [ -n "$LABPID" ]; then
		kill -TERM "$LABPID" 2>/dev/null || true
		wait "$LABPID" 2>/dev/null || true
		LABPID=
	fi
}

scalelab_up() {
	local bits=$1
	export CGO_ENABLED=0
	make -s build BIN="$WORK/exposure" # as `make build` ships it, version stamped
	go build -o "$WORK/labctl" ./internal/lab/labctl
	"$WORK/labctl" scale --bits "$bits" --for 60m --out "$WORK/lab.json" --truth "$WORK/truth.raw" \
		>/dev/null 2>"$WORK/labctl.log" &
	LABPID=$!
	for _ in $(seq 1200); do
		[ -s "$WORK/lab.json" ] && break
		kill -0 "$LABPID" 2>/dev/null || { cat "$WORK/labctl.log" >&2; exit 1; }
		sleep 0.25
	done
	[ -s "$WORK/lab.json" ] || { echo "$NAME: the scale lab did not come up" >&2; exit 1; }
	PREFIX=$(jq -r .prefix "$WORK/lab.json")
	IFACE=$(jq -r .interface "$WORK/lab.json")
	GW=$(jq -r .gateway "$WORK/lab.json")
	OPEN=$(jq -r .open "$WORK/lab.json")
	EXTRA=$(jq -r .extra "$WORK/lab.json")
	sort -u "$WORK/truth.raw" >"$WORK/truth"
	[ "$(wc -l <"$WORK/truth")" = "$OPEN" ] || { echo "$NAME: truth has $(wc -l <"$WORK/truth") lines, want $OPEN" >&2; exit 1; }
}

# check_route: aborts unless the first and the last address of the prefix
# route via the lab's gateway into its veth. `ip route get` sends nothing;
# the prefix is one route, so the two ends cover it.
check_route() {
	local first last a r
	first=${PREFIX%/*}
	last=$(jq -rn --arg p "$PREFIX" '$p | split("/") | .[0] | split(".") | map(tonumber) as $o
		| ($p | split("/") | .[1] | tonumber) as $b
		| ($o[0]*16777216 + $o[1]*65536 + $o[2]*256 + $o[3] + pow(2; 32 - $b) - 1) as $v
		| [($v / 16777216 | floor), ($v / 65536 | floor) % 256, ($v / 256 | floor) % 256, $v % 256] | map(tostring) | join(".")')
	for a in "$first" "$last"; do
		if ! r=$(ip -j route get "$a"); then
			echo "$NAME: ip route get $a failed; aborting" >&2; exit 1
		fi
		if [ "$(jq -r --arg d "$IFACE" --arg g "$GW" '.[0] | .dev == $d and .gateway == $g' <<<"$r")" != true ]; then
			echo "$NAME: $a does not route via $GW into $IFACE ($r); aborting" >&2; exit 1
		fi
	done
}
