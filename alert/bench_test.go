package alert

import (
	"fmt"
	"testing"
	"time"

	"github.com/exposure-monitor/exposure/snapshot"
)

// BenchmarkPlan plans a steady scan of a target with 1,000 firing
// conditions (all re-sent to Alertmanager, nothing new for the webhook).
func BenchmarkPlan(b *testing.B) {
	var conds []snapshot.Change
	for i := range 1000 {
		c := forbidden(uint16(1 + i%100))
		c.Address = fmt.Sprintf("198.18.%d.%d", i/250, i%250)
		conds = append(conds, c)
	}
	prev := Plan(planInput(t0, nil, conds...)).Firing
	in := planInput(t0.Add(time.Hour), prev, conds...)
	b.ReportAllocs()
	for b.Loop() {
		res := Plan(in)
		if len(res.Entries) != 1 || len(res.Firing) != 1000 {
			b.Fatalf("entries %d firing %d", len(res.Entries), len(res.Firing))
		}
	}
}

// BenchmarkSign signs a 16 KiB webhook body.
func BenchmarkSign(b *testing.B) {
	body := make([]byte, 16<<10)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		Sign(body, "benchmark-secret")
	}
}
