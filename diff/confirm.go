package diff

import (
	"context"
	"fmt"

	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// Prober re-probes a few (address, port) pairs and returns the state seen
// for each (snapshot.StateOpen, StateClosed or StateFiltered); a pair
// missing from the map counts as not open. A scanner engine with a pair
// list (spec.NewPairList) implements it in a few lines.
type Prober interface {
	Probe(ctx context.Context, pairs []spec.Pair) (map[spec.Pair]string, error)
}

// ProberFunc adapts a function to Prober.
type ProberFunc func(ctx context.Context, pairs []spec.Pair) (map[spec.Pair]string, error)

// Probe calls f.
func (f ProberFunc) Probe(ctx context.Context, pairs []spec.Pair) (map[spec.Pair]string, error) {
	return f(ctx, pairs)
}

// Confirm re-probes exactly the pairs of pending, up to m rounds, and
// commits a pending change when at least n rounds agree with it. The
// confirmed changes are recorded in the State they came from (Result.State)
// and returned, followed by the policy verdicts they make hold (a confirmed
// opening of a never_open port yields port_opened and forbidden_open).
// Unconfirmed changes are dropped; if the difference persists, the next
// scan proposes it again.
//
// n == 0 and m == 0 accept every pending change without probing (no
// confirmation configured); prober may then be nil. A probe error aborts
// without recording anything.
func Confirm(ctx context.Context, prober Prober, pending []Pending, n, m int) ([]snapshot.Change, error) {
	if len(pending) == 0 {
		return nil, nil
	}
	accepted := make([]bool, len(pending))
	switch {
	case n == 0 && m == 0:
		for i := range accepted {
			accepted[i] = true
		}
	case n < 1 || n > m:
		return nil, fmt.Errorf("diff: confirm: need 1 <= n <= m, have n=%d m=%d", n, m)
	case prober == nil:
		return nil, fmt.Errorf("diff: confirm: no prober")
	default:
		var err error
		if accepted, err = vote(ctx, prober, pending, n, m); err != nil {
			return nil, err
		}
	}
	return commit(pending, accepted), nil
}

// commit records the accepted pending changes in the State they came from
// and returns them, followed by the policy verdicts they make hold.
func commit(pending []Pending, accepted []bool) []snapshot.Change {
	var out []snapshot.Change
	var states []*State
	for i := range pending {
		if !accepted[i] {
			continue
		}
		pd := &pending[i]
		pd.apply()
		out = append(out, pd.Change)
		if len(states) == 0 || states[len(states)-1] != pd.st {
			states = append(states, pd.st)
		}
	}
	for _, st := range states {
		out = append(out, st.newVerdicts(st.scan.policy, st.scan.complete)...)
	}
	return out
}

func vote(ctx context.Context, prober Prober, pending []Pending, n, m int) ([]bool, error) {
	var pairs []spec.Pair
	seen := map[spec.Pair]bool{}
	for _, pd := range pending {
		if !seen[pd.Pair] {
			seen[pd.Pair] = true
			pairs = append(pairs, pd.Pair)
		}
	}
	agree := make([]int, len(pending))
	for round := range m {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("diff: confirm: %w", err)
		}
		got, err := prober.Probe(ctx, pairs)
		if err != nil {
			return nil, fmt.Errorf("diff: confirm round %d of %d: %w", round+1, m, err)
		}
		undecided := false
		for i, pd := range pending {
			if (got[pd.Pair] == snapshot.StateOpen) == pd.Open {
				agree[i]++
			}
			left := m - round - 1
			if agree[i] < n && agree[i]+left >= n {
				undecided = true
			}
		}
		if !undecided {
			break
		}
	}
	out := make([]bool, len(pending))
	for i := range agree {
		out[i] = agree[i] >= n
	}
	return out, nil
}
