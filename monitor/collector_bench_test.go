package monitor

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/exposure-monitor/exposure/snapshot"
)

// BenchmarkPortCollector measures one scrape of 100 targets with 100 open
// ports each (20,000 series: port_open and service_info).
func BenchmarkPortCollector(b *testing.B) {
	c := newPortCollector(50000)
	for i := range 100 {
		var ports []snapshot.Port
		for p := range 100 {
			ports = append(ports, openPort(uint16(1000+p), &snapshot.Service{Name: "http", Product: "nginx", Version: "1.22.1"}))
		}
		c.set(testSnapshot(fmt.Sprintf("t%03d", i), true, ports...))
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 3 {
			b.Fatalf("gather: %v, %d families", err, len(mfs))
		}
	}
}
