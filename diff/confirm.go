package diff

import (
	"cmp"
	"context"
	"fmt"

	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// Prober re-probes a few (address, port) pairs of one protocol
// (spec.ProtoTCP or spec.ProtoUDP) and returns the state seen for each
// (snapshot.StateOpen, StateClosed, StateFiltered or, over UDP,
// StateOpenFiltered); a pair missing from the map counts as not open. A
// scanner engine with a pair list (spec.NewPairList) implements it in a
// few lines.
type Prober interface {
	Probe(ctx context.Context, proto string, pairs []spec.Pair) (map[spec.Pair]string, error)
}

// ProberFunc adapts a function to Prober.
type ProberFunc func(ctx context.Context, proto string, pairs []spec.Pair) (map[spec.Pair]string, error)

// Probe calls f.
func (f ProberFunc) Probe(ctx context.Context, proto string, pairs []spec.Pair) (map[spec.Pair]string, error) {
	return f(ctx, proto, pairs)
}

// Confirm re-probes exactly the pairs of pending, each over its own
// protocol, up to m rounds, and commits a pending change when at least n
// rounds agree with it. Only "open" agrees with an opening; closed,
// filtered, open|filtered and no verdict all agree with a closure (a UDP
// port that stops answering is closed only when the re-probes, with their
// retries, hear nothing either). The
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

// protoPair is a re-probed pair with its protocol.
type protoPair struct {
	proto string
	pair  spec.Pair
}

func (pd *Pending) protoPair() protoPair {
	return protoPair{cmp.Or(pd.Protocol, spec.ProtoTCP), pd.Pair}
}

func vote(ctx context.Context, prober Prober, pending []Pending, n, m int) ([]bool, error) {
	var protos []string
	pairs := map[string][]spec.Pair{}
	seen := map[protoPair]bool{}
	for i := range pending {
		pp := pending[i].protoPair()
		if seen[pp] {
			continue
		}
		seen[pp] = true
		if len(pairs[pp.proto]) == 0 {
			protos = append(protos, pp.proto)
		}
		pairs[pp.proto] = append(pairs[pp.proto], pp.pair)
	}
	agree := make([]int, len(pending))
	for round := range m {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("diff: confirm: %w", err)
		}
		got := map[protoPair]string{}
		for _, proto := range protos {
			states, err := prober.Probe(ctx, proto, pairs[proto])
			if err != nil {
				return nil, fmt.Errorf("diff: confirm round %d of %d (%s): %w", round+1, m, proto, err)
			}
			for pair, st := range states {
				got[protoPair{proto, pair}] = st
			}
		}
		undecided := false
		for i := range pending {
			pd := &pending[i]
			if (got[pd.protoPair()] == snapshot.StateOpen) == pd.Open {
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
