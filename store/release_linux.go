package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// ReleaseCache drops the database file's pages from the process's
// resident set: bbolt reads through a shared read-only mapping of the
// file, so every page a scan's commit or a read touched counts in the
// daemon's RSS until the kernel needs the memory. The pages stay in the
// page cache; the next read maps them again. It runs inside a read
// transaction, which keeps bbolt from remapping the file meanwhile.
func (s *Store) ReleaseCache() error {
	return s.view(releaseMapped)
}

// releaseMapped drops the mapping's resident pages while tx keeps bbolt
// from remapping the file: a read transaction, or a write transaction
// that has not allocated a page yet (a commit's walk of the target's
// keys, which would otherwise bring the whole file into the RSS).
func releaseMapped(tx *bolt.Tx) error {
	data, size := tx.DB().Info().Data, tx.Size()
	if data == 0 || size <= 0 {
		return nil
	}
	// bbolt's own mapping, of at least size bytes (its high-water
	// mark of allocated pages).
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, data, uintptr(size), unix.MADV_DONTNEED); errno != 0 {
		return fmt.Errorf("store: release %s: %w", tx.DB().Path(), errno)
	}
	return nil
}
