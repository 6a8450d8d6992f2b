package scanner

import "github.com/exposure-monitor/exposure/snapshot"

// Merge adds the hosts, ports and figures of b (the UDP sweep of the same
// target) to a (its TCP sweep) and returns a: one snapshot per scan, as nmap
// prints -sS -sU together. Either may be nil; a is complete only when both
// are.
func Merge(a, b *snapshot.Snapshot) *snapshot.Snapshot {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	a.Complete = a.Complete && b.Complete
	a.Quality.ProbesSent += b.Quality.ProbesSent
	a.Quality.Replies += b.Quality.Replies
	a.Quality.Retransmits += b.Quality.Retransmits
	a.Quality.Closed += b.Quality.Closed
	a.Quality.Filtered += b.Quality.Filtered
	if b.FinishedAt.After(a.FinishedAt) {
		a.FinishedAt = b.FinishedAt
	}
	idx := map[string]int{}
	for i, h := range a.Hosts {
		idx[h.Address] = i
	}
	for _, h := range b.Hosts {
		i, ok := idx[h.Address]
		if !ok {
			a.Hosts = append(a.Hosts, h)
			idx[h.Address] = len(a.Hosts) - 1
			continue
		}
		dst := &a.Hosts[i]
		dst.Ports = append(dst.Ports, h.Ports...)
		dst.Unlisted.Merge(h.Unlisted)
		if h.State == snapshot.HostUp {
			dst.State = snapshot.HostUp
		}
		if dst.Hostname == "" {
			dst.Hostname = h.Hostname
		}
	}
	a.Sort()
	return a
}
