package main

import (
	"regexp"
	"strings"

	"github.com/alecthomas/kingpin/v2"
)

// preparse rewrites the command line before kingpin parses it, for two
// things kingpin cannot do:
//
//   - A flag value that kingpin would take for a flag ("--rate -5",
//     "-p -") is joined to its flag ("--rate=-5", "-p-"), so that the
//     flag's own check names the bad value (kingpin said only "expected
//     argument") and "-p -" means all ports as in nmap.
//   - On scan, nmap's options typed as an nmap user types them (-sV, -Pn,
//     -T4, -oX FILE; kingpin would read -sV as -s -V) become ours, or are a
//     usage error that names ours (nmapHabits).
//
// notes are for stderr: nmap options accepted that change nothing here.
func preparse(app *kingpin.Application, args []string) (out, notes []string, err error) {
	m := app.Model()
	valued := map[string]bool{} // "--name" and "-x" of flags that take a value
	addFlags := func(flags []*kingpin.FlagModel) {
		for _, f := range flags {
			if !f.IsBoolFlag() {
				valued["--"+f.Name] = true
				if f.Short != 0 {
					valued["-"+string(f.Short)] = true
				}
			}
		}
	}
	addFlags(m.Flags)
	cmd := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(out, args[i:]...), notes, nil
		case cmd == "" && !strings.HasPrefix(a, "-"):
			cmd = a
			for _, c := range m.Commands {
				if c.Name == a {
					addFlags(c.Flags)
				}
			}
			out = append(out, a)
			continue
		case cmd == "scan" && !valued[a]:
			h, val, ok := nmapHabit(a)
			if !ok {
				break
			}
			if h.err != "" {
				return nil, nil, usagef("%s: %s", a, h.err)
			}
			if h.note != "" {
				notes = append(notes, a+": "+h.note)
			}
			if h.value != "" && val == "" {
				if i+1 >= len(args) {
					return nil, nil, usagef("%s: needs %s", a, h.value)
				}
				i++
				val = args[i]
			}
			for _, r := range h.args {
				out = append(out, strings.ReplaceAll(r, "VALUE", val))
			}
			continue
		}
		if valued[a] && i+1 < len(args) {
			v := args[i+1]
			i++
			if v == "-" || negative.MatchString(v) {
				if strings.HasPrefix(a, "--") {
					a += "="
				}
				out = append(out, a+v)
			} else {
				out = append(out, a, v) // a value, even if it looks like an nmap option
			}
			continue
		}
		out = append(out, a)
	}
	return out, notes, nil
}

// negative is a value kingpin would take for a short flag.
var negative = regexp.MustCompile(`^-[0-9.]`)

// habit is what one nmap option does on exposure scan: our arguments
// (VALUE stands for the option's value), a note, or an error that names
// our equivalent.
type habit struct {
	args  []string
	value string // the option takes a value, named so
	note  string
	err   string
}

const (
	noPing       = "exposure has no ping phase: every address is probed on its ports and is up when one answers (as nmap -Pn)"
	fastTiming   = "ignored: exposure's timing is already its fastest (--rate PPS and --retries N tune it)"
	slowTiming   = "nmap's slow timing templates are not supported; use --rate PPS (probes per second, e.g. --rate 10) and --retries N"
	noAllFormats = "-oA is not supported; use -oX FILE (nmap XML) and --format json or text with a redirect"
	normalOutput = "exposure prints its normal output on stdout; use --format text and redirect it (> FILE)"
	noGrepable   = "grepable output is not supported; use --format json (one snapshot document) and redirect it"
	noOS         = "OS detection is not supported"
	noAggressive = "-A (OS and version detection, scripts, traceroute) is not supported; use --sV for version detection"
	noUDP        = "UDP ports are named in the port spec, as nmap also allows: -p U:53,161, -p T:22,U:53 or -p udp-top:1000"
	noSYNFlags   = "only the SYN (--engine syn) and connect (--engine connect) scans are supported"
)

// nmapHabits maps an nmap option, as typed, to what exposure scan does with
// it. Options nmap spells like ours (-p, -n, -e, --version-intensity) need
// no entry.
var nmapHabits = map[string]habit{
	"-sV":         {args: []string{"--sV"}},
	"-sS":         {args: []string{"--engine=syn"}},
	"-sT":         {args: []string{"--engine=connect"}},
	"-sU":         {err: noUDP},
	"-Pn":         {note: noPing},
	"-O":          {err: noOS},
	"-A":          {err: noAggressive},
	"-oX":         {args: []string{"--output.xml=VALUE"}, value: "a file name"},
	"-oN":         {err: normalOutput},
	"-oG":         {err: noGrepable},
	"-oA":         {err: noAllFormats},
	"--top-ports": {args: []string{"--ports=top:VALUE"}, value: "a number of ports"},
}

// nmapHabit finds the habit of argument a, with a value given in the same
// argument ("--top-ports=100", "-oXscan.xml"); ok is false for an argument
// that is not an nmap option (or is one of ours).
func nmapHabit(a string) (h habit, val string, ok bool) {
	if h, ok := nmapHabits[a]; ok {
		return h, "", true
	}
	if name, v, found := strings.Cut(a, "="); found && strings.HasPrefix(a, "--") {
		if h, ok := nmapHabits[name]; ok && h.value != "" {
			return h, v, true
		}
	}
	switch {
	case len(a) > 3 && strings.HasPrefix(a, "-o"):
		if h, ok := nmapHabits[a[:3]]; ok {
			if h.value != "" {
				return h, a[3:], true // "-oXscan.xml"
			}
			return h, "", true // "-oNscan.txt": an error
		}
	case len(a) == 3 && strings.HasPrefix(a, "-s"):
		return habit{err: noSYNFlags}, "", true // -sF, -sX, -sN, -sA, ...
	case strings.HasPrefix(a, "-T") && len(a) > 2:
		switch a[2:] {
		case "3", "4", "5", "normal", "aggressive", "insane":
			return habit{note: fastTiming}, "", true
		}
		return habit{err: slowTiming}, "", true
	}
	return habit{}, "", false
}
