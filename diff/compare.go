package diff

import "github.com/exposure-monitor/exposure/snapshot"

// Compare returns the changes from scan a to scan b of one target, the
// plain difference a user asks for when comparing two stored scans: a is
// taken as the reported view (even when incomplete: its ports are what it
// saw) and every port opening and closure counts as confirmed. It keeps no
// State, so nothing is confirmed by re-probing and no port is flap-damped;
// the guards of a single comparison hold: an incomplete b yields no
// closures and no host_down, a host answering on every port is one
// all_ports_open, an inconclusive detection in b is no service change (it
// would need WeakScans scans in a row), and a policy verdict is reported
// only when it holds in b and not in a.
//
// Compare does not modify a or b.
func Compare(a, b *snapshot.Snapshot, p Policy) []snapshot.Change {
	p = p.withDefaults()
	st := NewState()
	st.seed(a, p)
	st.Verdicts = keys(verdicts(stateView(st, p), p))
	res := Diff(a, b, st, p)
	accepted := make([]bool, len(res.Pending))
	for i := range accepted {
		accepted[i] = true
	}
	return append(res.Changes, commit(res.Pending, accepted)...)
}
