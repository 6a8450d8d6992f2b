#!/usr/bin/env bash
# sv-vs-nmap.sh: service and version detection, exposure against nmap -sV,
# on the same real Debian daemons in one lab host, in one run.
#
#   sudo bench/sv-vs-nmap.sh            # needs root (network namespaces) and nmap
#   sudo bench/sv-vs-nmap.sh --services # the second daemon group (lab.ServiceDaemons)
#   sudo bench/sv-vs-nmap.sh --windows  # the third (lab.WindowsDaemons: Samba, xrdp, ...)
#   sudo bench/sv-vs-nmap.sh --fourth   # the fourth (lab.FourthDaemons: telnetd, Prosody, OpenVPN, ...)
#   sudo bench/sv-vs-nmap.sh --fifth    # the fifth (lab.FifthDaemons: vsftpd, Postfix)
#   sudo bench/sv-vs-nmap.sh --all      # the whole lab: every group on a host of its own
#
# It brings up a lab host with every daemon of internal/lab (labctl), runs
# `nmap -sV` and exposure's detector over the same ports, and prints both
# times and a per-port table: nmap's answer, ours, and whether service and
# product (and the version, where nmap has one) agree. exposure's side is
# `exposure scan --sV`. Packets go only to the lab host: both tools are bound
# to the lab's bridge (-e BRIDGE), and right before each run `ip route get`
# must lead the host's address straight into that bridge, or the script
# aborts.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then echo "sv-vs-nmap: needs root for the lab" >&2; exit 2; fi
for b in nmap jq python3 go; do
  command -v "$b" >/dev/null || { echo "sv-vs-nmap: $b is not installed" >&2; exit 2; }
done

group=--daemons
HOSTS=1
case "${1:-}" in
--services) group=--service-daemons ;;
--windows) group=--windows-daemons ;;
--fourth) group=--fourth-daemons ;;
--fifth) group=--fifth-daemons ;;
--all) group=--all-groups HOSTS=5 ;;
"") ;;
*) echo "sv-vs-nmap: unknown argument ${1}; want --services, --windows, --fourth, --fifth or --all" >&2; exit 2 ;;
esac

NAME=sv-vs-nmap
# shellcheck source=bench/onehost.sh
. bench/onehost.sh
onehost_up "$group"
# One port list for every host (the union of the groups' ports): both tools
# get the same workload, and the ports closed on a host answer with RST.
ports=$(jq -r '[.hosts[].open // [] | .[]] | unique | map(tostring) | join(",")' "$work/lab.json")
jq -r '.hosts[] | select(.daemons) | "lab host \(.addr): \(.open | map(tostring) | join(",")) (\(.daemons | join(" ")))"' "$work/lab.json"
echo "on $bridge, ports scanned on each: $ports"

for a in $addrs; do check_route "$a"; done
t0=$(date +%s.%N)
# shellcheck disable=SC2086 # addrs is a list
nmap -sV -Pn -n -e "$bridge" -p "$ports" -oX "$work/nmap.xml" $addrs >/dev/null
t1=$(date +%s.%N)
for a in $addrs; do check_route "$a"; done
t1b=$(date +%s.%N)
# shellcheck disable=SC2086
"$work/exposure" scan --sV --engine connect -e "$bridge" -p "$ports" --format json $addrs >"$work/ours.json"
t2=$(date +%s.%N)

python3 - "$work/nmap.xml" "$work/ours.json" "$t0" "$t1" "$t1b" "$t2" <<'PY'
import json, sys, xml.etree.ElementTree as ET
nmapxml, oursf, t0, t1, t1b, t2 = sys.argv[1:]
nmap_s, ours_s = float(t1) - float(t0), float(t2) - float(t1b)

def fmt(s):
    if not s:
        return "-"
    if s.get("guess"):
        return "unknown (port table: " + s["guess"] + ")"
    name = (s.get("tunnel") and s["tunnel"] + "/" or "") + (s.get("name") or "")
    rest = " ".join(x for x in (s.get("product"), s.get("version")) if x)
    return (name + " " + rest).strip()

nm = {}
for h in ET.parse(nmapxml).getroot().iter("host"):
    addr = h.find("address").get("addr")
    for p in h.iter("port"):
        if p.find("state").get("state") != "open":
            continue
        sv = p.find("service")
        d = {} if sv is None else {k: sv.get(k, "") for k in ("name", "product", "version", "tunnel", "method")}
        if d.get("method") == "table":
            # nmap guessed the name from the port number: it found nothing.
            d = {"name": "unknown", "guess": d["name"]}
        nm[(addr, int(p.get("portid")))] = d

ours = {}
for h in json.load(open(oursf)).get("hosts", []):
    for p in h.get("ports", []):
        ours[(h["address"], p["port"])] = p.get("service") or {}
hosts = sorted({a for a, _ in set(nm) | set(ours)}, key=lambda a: tuple(int(x) for x in a.split(".")))
multi = len(hosts) > 1

def later(a, b):
    # a >= b for dotted versions like 14.0 and 9.6.0
    try:
        pa, pb = [int(x) for x in a.split(".")], [int(x) for x in b.split(".")]
    except ValueError:
        return False
    return pa >= pb

rows, agree, vagree, vtotal, better = [], 0, 0, 0, 0
for key in sorted(set(nm) | set(ours), key=lambda k: (hosts.index(k[0]), k[1])):
    n, o = nm.get(key, {}), ours.get(key, {})
    port = (key[0] + ":" if multi else "") + str(key[1])
    n_unknown = not n.get("product") and n.get("name") in ("", "unknown", None)
    same = (n.get("name") == o.get("name") and n.get("product", "") == o.get("product", "")
            and (n.get("tunnel", "") == o.get("tunnel", "")))
    nname = n.get("name") or ""
    if same:
        verdict = "yes"
        agree += 1
    elif " " in nname and o.get("version") and o["version"] in nname and o.get("product", "").split()[-1].lower() in nname.lower():
        # nmap's mqtt-subscribe script writes the broker's version string
        # into the service name; the probe itself said mqtt.
        verdict = "same (nmap's name is its NSE's version string)"
        agree += 1
    elif n_unknown and o.get("name") not in ("", "unknown", None):
        verdict = "better (nmap: unknown)"
        better += 1
    elif n.get("name") == o.get("name") and n.get("product", "") == o.get("product", ""):
        verdict = "tunnel differs"
    else:
        verdict = "NO"
    if n.get("version"):
        vtotal += 1
        nv, ov = n.get("version"), o.get("version") or ""
        if nv == ov:
            vagree += 1
        elif nv.endswith(" or later") and ov.endswith(" or later") and later(ov[:-9], nv[:-9]):
            vagree += 1
            verdict += ", version range narrower"
        else:
            verdict += ", version differs"
    elif o.get("version") and verdict.startswith("yes"):
        verdict += " (+version)"
    rows.append((str(port), fmt(n), fmt(o), verdict))

w = [max(len(r[i]) for r in rows + [("PORT", "NMAP -sV", "EXPOSURE", "AGREE")]) for i in range(4)]
named = sum(1 for r in rows if not r[1].startswith("unknown") and r[1] != "-")
line = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip()
print(line(("PORT", "NMAP -sV", "EXPOSURE", "AGREE")))
for r in rows:
    print(line(r))
total = len(rows)
print()
print(f"nmap -sV:        {nmap_s:7.2f} s")
print(f"exposure:        {ours_s:7.2f} s   ratio {ours_s / nmap_s:.3f} of nmap's time")
print(f"service+product agree: {agree}/{total} ({named} ports nmap names); better where nmap said unknown: {better}; "
      f"versions agree where nmap has one: {vagree}/{vtotal}")
PY
