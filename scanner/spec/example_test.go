package spec_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/exposure-monitor/exposure/scanner/spec"
)

func ExampleParsePorts() {
	p, err := spec.ParsePorts("top:10, 8080-8090, 22")
	if err != nil {
		panic(err)
	}
	fmt.Println(p.Len(), p)
	_, err = spec.ParsePorts("22,80-70")
	fmt.Println(err)
	// Output:
	// 21 21-23,25,80,110,139,443,445,3389,8080-8090
	// "80-70": range end before start
}

func ExampleTargets_Resolve() {
	t, err := spec.ParseTargets([]string{"198.18.0.0/30", "mail.example.test"}, []string{"198.18.0.1"})
	if err != nil {
		panic(err)
	}
	lookup := func(_ context.Context, host string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("2001:2::25")}, nil
	}
	set, err := t.Resolve(context.Background(), lookup)
	if err != nil {
		panic(err)
	}
	fmt.Println(t.StaticCount(), set.Len(), set)
	fmt.Println(set.Name(netip.MustParseAddr("2001:2::25")))
	// Output:
	// 4 4 198.18.0.0,198.18.0.2-198.18.0.3,2001:2::25
	// mail.example.test
}

func ExampleNewOrder() {
	t, _ := spec.ParseTargets([]string{"198.18.0.1-2"}, nil)
	set, _ := t.Resolve(context.Background(), nil)
	ports, _ := spec.ParsePorts("22,80")
	o := spec.NewOrder(set, ports, spec.OrderOptions{Sequential: true})
	for addr, port, ok := o.Next(); ok; addr, port, ok = o.Next() {
		fmt.Println(netip.AddrPortFrom(addr, port))
	}
	// Output:
	// 198.18.0.1:22
	// 198.18.0.1:80
	// 198.18.0.2:22
	// 198.18.0.2:80
}
