//go:build !linux

package store

import bolt "go.etcd.io/bbolt"

// ReleaseCache is a no-op where madvise(MADV_DONTNEED) is not used.
func (s *Store) ReleaseCache() error { return nil }

func releaseMapped(*bolt.Tx) error { return nil }
