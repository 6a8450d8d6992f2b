package config

import (
	"crypto/md5"
	"encoding/binary"
)

// Owns reports whether the daemon running shard s scans the target called
// name. Like Prometheus' hashmod relabelling it takes the MD5 of the name
// modulo Total, so N daemons with indexes 0..N-1 split the targets between
// them exactly once each, with no coordination, and two daemons with the
// same index form an HA pair. A zero Shard (Total 0) owns everything.
func (s Shard) Owns(name string) bool {
	if s.Total <= 1 {
		return true
	}
	sum := md5.Sum([]byte(name))
	return binary.BigEndian.Uint64(sum[8:])%uint64(s.Total) == uint64(s.Index)
}

// OwnedTargets returns the targets of c this shard scans, in file order.
func (c *Config) OwnedTargets() []*Target {
	var out []*Target
	for _, t := range c.Targets {
		if c.Global.Shard.Owns(t.Name) {
			out = append(out, t)
		}
	}
	return out
}
