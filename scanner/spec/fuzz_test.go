package spec

import (
	"context"
	"errors"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// reasons is every reason the parsers may give; a fuzz input that produces another is a bug.
var reasons = []string{
	reasonEmptyPorts, reasonEmptyElement, reasonNotPort, reasonPortRange, reasonEndBefore, reasonTop,
	reasonEmptyTarget, reasonBadAddr, reasonBadPrefix, reasonBadRange, reasonMixedFamily, reasonZone,
	reasonBadHostname, reasonEmptyTargets, reasonUDPTop, reasonProtoPort,
}

func checkSpecError(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *spec.Error", err, err)
	}
	if !slices.Contains(reasons, e.Reason) {
		t.Fatalf("unknown reason %q", e.Reason)
	}
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{
		"22,80,443", "1-1024", "-", "1-65535", "top:1000", "top:100,8080-8090", " 22 , 80 ", "80-70",
		"70000", "0", "", "http", "top:0", "22,,80", "-1024", "60000-", "1-10,5-20", "top:1,top:2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePorts(s)
		if err != nil {
			checkSpecError(t, err)
			return
		}
		if p.Len() < 1 || p.Len() > 65535 {
			t.Fatalf("Len %d out of range", p.Len())
		}
		q, err := ParsePorts(p.String())
		if err != nil {
			t.Fatalf("String %q does not re-parse: %v", p.String(), err)
		}
		if !p.Equal(q) || q.String() != p.String() {
			t.Fatalf("round trip %q -> %q -> %q", s, p.String(), q.String())
		}
		// At is ascending and agrees with Contains at the ends and in the middle.
		for _, i := range []int{0, p.Len() / 2, p.Len() - 1} {
			if !p.Contains(p.At(i)) || (i > 0 && p.At(i-1) >= p.At(i)) {
				t.Fatalf("At(%d) = %d inconsistent", i, p.At(i))
			}
		}
		if len(s) <= 40 {
			if n := len(expand(p)); n != p.Len() {
				t.Fatalf("Len %d but Contains holds for %d ports", p.Len(), n)
			}
		}
	})
}

// hashLookup resolves every hostname to one address in 198.18.0.0/24 derived from the name, so
// fuzzed hostnames are deterministic and never touch DNS.
func hashLookup(_ context.Context, host string) ([]netip.Addr, error) {
	h := fnv.New32a()
	h.Write([]byte(host))
	return []netip.Addr{netip.AddrFrom4([4]byte{198, 18, 0, byte(h.Sum32())})}, nil
}

func FuzzParseTargets(f *testing.F) {
	for _, s := range [][2]string{
		{"198.18.0.1", ""}, {"198.18.0.0/24", "198.18.0.5"}, {"198.18.0.1-20", ""},
		{"198.18.0.1-198.18.1.5", "198.18.0.0/31"}, {"2001:2::/120", "2001:2::5-2001:2::7"},
		{"mail.example.test 198.18.0.7/29", "web.example.test"}, {"::ffff:198.18.0.1", ""},
		{"2001:2::1-2001:2::ff", ""}, {"fe80::1%eth0", ""}, {"198.18.0.20-10", ""}, {"-a.test", ""},
		{"10.0.0.0/8", "10.0.0.0/9"}, {"2001:2::/64", ""}, {"a,b", "c"}, {"", ""},
		{"::/0", "198.18.0.44"}, {"::/95", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, hosts, exclude string) {
		var excl []string
		if exclude != "" {
			excl = strings.Split(exclude, " ")
		}
		spec, err := ParseTargets(strings.Split(hosts, " "), excl)
		if err != nil {
			checkSpecError(t, err)
			return
		}
		set, err := spec.Resolve(t.Context(), hashLookup)
		if err != nil {
			t.Fatalf("resolve: %v", err)
		}
		n := set.Len()
		if n > spec.StaticCount() {
			t.Fatalf("Len %d > StaticCount %d", n, spec.StaticCount())
		}
		if len(spec.hostnames) == 0 && len(spec.exclHostnames) == 0 && n != spec.StaticCount() {
			t.Fatalf("Len %d != StaticCount %d without hostnames", n, spec.StaticCount())
		}
		if n == 0 {
			return
		}
		for _, i := range []uint64{0, n / 3, n / 2, n - 1} {
			a := set.At(i)
			if !set.Contains(a) || (i > 0 && fromAddr(set.At(i-1)).cmp(fromAddr(a)) >= 0) {
				t.Fatalf("At(%d) = %v inconsistent", i, a)
			}
		}
		// The set's ranges are themselves a target spec for the same set.
		again, err := ParseTargets(strings.Split(set.String(), ","), nil)
		if err != nil {
			t.Fatalf("String %q does not re-parse: %v", set.String(), err)
		}
		set2, err := again.Resolve(t.Context(), nil)
		if err != nil || set2.String() != set.String() || set2.Len() != n {
			t.Fatalf("round trip %q -> %q (%v)", set.String(), set2.String(), err)
		}
	})
}

// FuzzOrder checks the permutation exhaustively for small sizes and arbitrary seeds.
func FuzzOrder(f *testing.F) {
	f.Add(uint64(1), uint8(1), uint8(1), false)
	f.Add(uint64(2), uint8(3), uint8(7), false)
	f.Add(uint64(0), uint8(16), uint8(16), false)
	f.Add(uint64(99), uint8(5), uint8(3), true)
	f.Fuzz(func(t *testing.T, seed uint64, nAddr, nPort uint8, seq bool) {
		a, p := setOfN(t, int(nAddr)), portsOfN(int(nPort))
		o := NewOrder(a, p, OrderOptions{Seed: seed, Sequential: seq})
		want := int(nAddr) * int(nPort)
		if o.Len() != uint64(want) {
			t.Fatalf("Len %d, want %d", o.Len(), want)
		}
		seen := make(map[Pair]bool, want)
		for addr, port, ok := o.Next(); ok; addr, port, ok = o.Next() {
			pair := Pair{addr, port}
			if seen[pair] || !a.Contains(addr) || !p.Contains(port) {
				t.Fatalf("bad or repeated pair %v", pair)
			}
			seen[pair] = true
		}
		if len(seen) != want {
			t.Fatalf("%d pairs, want %d", len(seen), want)
		}
	})
}

func FuzzParseProtoPort(f *testing.F) {
	for _, s := range []string{"22", "T:22", "U:161", "u:53", "161/udp", "22/TCP", "U:", "X:1", "U:70000", "0", "1/sctp", " U: 9 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseProtoPort(s)
		if err != nil {
			checkSpecError(t, err)
			return
		}
		if p.Port == 0 || (p.Proto != ProtoTCP && p.Proto != ProtoUDP) {
			t.Fatalf("ParseProtoPort(%q) = %+v", s, p)
		}
		q, err := ParseProtoPort(p.String())
		if err != nil || q != p {
			t.Fatalf("round trip %q -> %q -> %+v, %v", s, p.String(), q, err)
		}
		var j ProtoPort
		if err := j.UnmarshalJSON([]byte(`"` + p.String() + `"`)); err != nil || j != p {
			t.Fatalf("UnmarshalJSON of %q: %+v, %v", p.String(), j, err)
		}
	})
}
