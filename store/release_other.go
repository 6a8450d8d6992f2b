//go:build !linux

package store

// ReleaseCache is a no-op where madvise(MADV_DONTNEED) is not used.
func (s *Store) ReleaseCache() error { return nil }
