package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"math"
	"os"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Sentinel errors; check them with errors.Is.
var (
	// ErrNotFound is returned when a snapshot, target or entry does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrLocked is wrapped when another process holds the database.
	ErrLocked = errors.New("locked by another process")
	// ErrCorrupt is wrapped when the file is truncated, garbage or damaged.
	ErrCorrupt = errors.New("corrupt or truncated database")
	// ErrSchema is wrapped when the file's schema version is not supported.
	ErrSchema = errors.New("unsupported schema version")
)

// Bucket names.
var (
	bucketMeta      = []byte("meta")
	bucketScans     = []byte("scans")
	bucketBlobs     = []byte("blobs")
	bucketIDs       = []byte("ids")
	bucketTargets   = []byte("targets")
	bucketHosts     = []byte("hosts")
	bucketPorts     = []byte("ports")
	bucketChanges   = []byte("changes")
	bucketOutbox    = []byte("outbox")
	bucketDiffState = []byte("diffstate")

	keySchema = []byte("schema")
)

func allBuckets() [][]byte {
	return [][]byte{bucketMeta, bucketScans, bucketBlobs, bucketIDs, bucketTargets,
		bucketHosts, bucketPorts, bucketChanges, bucketOutbox, bucketDiffState}
}

// valueV1 is the first byte of every value this schema writes.
const valueV1 = 1

// DefaultTimeout is how long Open waits for another process's lock.
const DefaultTimeout = time.Second

// Options tune Open.
type Options struct {
	// Timeout bounds the wait for the file lock; zero means DefaultTimeout.
	Timeout time.Duration
	// ReadOnly opens with a shared lock and never writes (history, diff).
	ReadOnly bool
	// NoSync skips fsync after each commit. Only for throwaway files
	// (benchmarks); a crash may lose committed scans.
	NoSync bool
}

func (o *Options) validate() error {
	if o.Timeout < 0 {
		return fmt.Errorf("store: negative timeout %s", o.Timeout)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	return nil
}

// Store is an open database. It is safe for concurrent use; bbolt allows
// one writer and many readers.
type Store struct {
	db   *bolt.DB
	path string
	// pruneBatch bounds the keys of one prune transaction (tests lower it).
	pruneBatch int
	// pruneLongest is the longest prune transaction so far, in
	// nanoseconds, for BenchmarkPruneYear.
	pruneLongest atomic.Int64
	// commitBatch bounds the keys of one staged commit transaction
	// (tests lower it); staged, when set, runs after each (tests).
	commitBatch int
	staged      func() error
}

// migration moves a database from version i to i+1 inside tx.
type migration func(tx *bolt.Tx) error

// migrations is the upgrade path; its length is the current schema version.
// Step 0 creates the buckets of version 1 on a new file.
func migrations() []migration {
	return []migration{
		func(tx *bolt.Tx) error {
			for _, b := range allBuckets() {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// SchemaVersion is the schema this package writes.
func SchemaVersion() uint32 { return uint32(len(migrations())) }

// Open opens or creates the database at path. A second process on the same
// file fails after o.Timeout with an error wrapping ErrLocked; a truncated
// or damaged file yields an error wrapping ErrCorrupt, never a panic.
func Open(path string, o Options) (*Store, error) {
	return openWith(path, o, migrations())
}

func openWith(path string, o Options, migs []migration) (s *Store, err error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := preflight(path, o); err != nil {
		return nil, err
	}
	// bbolt panics (or faults) on some damaged pages; turn that into an
	// error and close the file bbolt opened. (Once bbolt has mapped the
	// file, the mapping keeps the lock until exit: preflight checks the
	// pages bbolt.Open itself reads, so that case needs a damage preflight
	// cannot see.)
	var file *os.File
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if file != nil {
				_ = file.Close()
			}
			s, err = nil, fmt.Errorf("store: database %s: %w: %v", path, ErrCorrupt, r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:  o.Timeout,
		ReadOnly: o.ReadOnly,
		NoSync:   o.NoSync,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	if err != nil {
		return nil, openError(path, o, err)
	}
	s = &Store{db: db, path: path, pruneBatch: defaultPruneBatch, commitBatch: defaultCommitBatch}
	defer func() {
		if err != nil {
			_ = db.Close()
		}
	}()
	if err := s.migrate(o.ReadOnly, migs); err != nil {
		return nil, err
	}
	if !o.ReadOnly {
		// A scan whose staged commit a crash cut short (see defaultCommitBatch).
		if err := s.recoverStaged(); err != nil {
			return nil, fmt.Errorf("store: %s: roll back a staged commit: %w", path, err)
		}
	}
	return s, nil
}

func openError(path string, o Options, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("store: database %s is %w (timeout %s)", path, ErrLocked, o.Timeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrInvalidMapping):
		return fmt.Errorf("store: database %s: %w: %w", path, ErrCorrupt, err)
	default:
		return fmt.Errorf("store: open %s: %w", path, unpath(err))
	}
}

// unpath returns the cause of an *fs.PathError, whose text repeats the
// operation and the path that this package's messages already name ("store:
// open PATH: open PATH: permission denied"). errors.Is still sees the
// cause (fs.ErrNotExist, fs.ErrPermission).
func unpath(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

func (s *Store) migrate(readOnly bool, migs []migration) error {
	want := uint32(len(migs))
	check := func(tx *bolt.Tx) (uint32, error) {
		var have uint32
		if b := tx.Bucket(bucketMeta); b != nil {
			if v := b.Get(keySchema); len(v) == 4 {
				have = binary.BigEndian.Uint32(v)
			} else if v != nil {
				return 0, fmt.Errorf("store: database %s: %w: schema key has %d bytes", s.path, ErrCorrupt, len(v))
			}
		}
		if have > want {
			return 0, fmt.Errorf("store: database %s has schema version %d, newer than this exposure supports (%d): %w; upgrade exposure", s.path, have, want, ErrSchema)
		}
		return have, nil
	}
	if readOnly {
		return s.view(func(tx *bolt.Tx) error {
			have, err := check(tx)
			if err != nil {
				return err
			}
			if have != want {
				return fmt.Errorf("store: database %s has schema version %d, this exposure reads %d: %w; open it read-write once to migrate", s.path, have, want, ErrSchema)
			}
			return nil
		})
	}
	return s.update(func(tx *bolt.Tx) error {
		have, err := check(tx)
		if err != nil {
			return err
		}
		for v := have; v < want; v++ {
			if err := migs[v](tx); err != nil {
				return fmt.Errorf("store: migrate schema %d to %d: %w", v, v+1, err)
			}
		}
		for _, name := range allBuckets() {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("store: create bucket %s: %w", name, err)
			}
		}
		if have != want {
			var buf [4]byte
			binary.BigEndian.PutUint32(buf[:], want)
			if err := tx.Bucket(bucketMeta).Put(keySchema, buf[:]); err != nil {
				return fmt.Errorf("store: write schema version: %w", err)
			}
		}
		return nil
	})
}

// Close releases the file and its lock.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	return nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Size is the database size in bytes as bbolt sees it (high-water mark of
// allocated pages), which excludes free space at the end of the file.
func (s *Store) Size() (int64, error) {
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		n = tx.Size()
		return nil
	})
	return n, err
}

// Check walks every page and reports inconsistencies (slow on big files).
func (s *Store) Check() error {
	return s.view(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("store: database %s: %w: %w", s.path, ErrCorrupt, err)
		}
		return nil
	})
}

// view and update run fn in a transaction and turn a bbolt panic on a
// damaged page into an ErrCorrupt error.
func (s *Store) view(fn func(tx *bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer s.recoverCorrupt(&err)
	return s.db.View(fn)
}

func (s *Store) update(fn func(tx *bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer s.recoverCorrupt(&err)
	return s.db.Update(fn)
}

func (s *Store) recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("store: database %s: %w: %v", s.path, ErrCorrupt, r)
	}
}

// bbolt's on-disk meta page (internal/common.Meta) after the 16-byte page
// header: magic, version, page size, flags (4 bytes each), root bucket
// (root pgid, sequence), freelist pgid, high-water pgid, txid, checksum.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	pageHeaderSize = 16
	metaSumLen     = 56
	metaLen        = metaSumLen + 8
)

type boltMeta struct {
	pageSize uint32
	freelist uint64
	pgid     uint64
	txid     uint64
}

func parseMeta(buf []byte) (boltMeta, error) {
	if len(buf) < pageHeaderSize+metaLen {
		return boltMeta{}, errors.New("short meta page")
	}
	m := buf[pageHeaderSize : pageHeaderSize+metaLen]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, errors.New("not a bbolt file (bad magic)")
	}
	if v := le.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("bbolt format version %d", v)
	}
	h := fnv.New64a()
	h.Write(m[:metaSumLen])
	if h.Sum64() != le.Uint64(m[metaSumLen:]) {
		return boltMeta{}, errors.New("meta page checksum mismatch")
	}
	meta := boltMeta{pageSize: le.Uint32(m[8:]), freelist: le.Uint64(m[32:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}
	if meta.pageSize < 512 || meta.pageSize&(meta.pageSize-1) != 0 {
		return boltMeta{}, fmt.Errorf("page size %d", meta.pageSize)
	}
	return meta, nil
}

// preflight validates the meta pages and the file length before bbolt maps
// the file: bbolt would map past the end of a truncated file and die of
// SIGBUS on first access. It holds the same flock bbolt will take, so it
// never reads a file another process is writing.
func preflight(path string, o Options) error {
	flag := os.O_RDONLY
	f, err := os.OpenFile(path, flag, 0)
	if errors.Is(err, os.ErrNotExist) && !o.ReadOnly {
		return nil // bbolt creates it
	}
	if err != nil {
		return fmt.Errorf("store: open %s: %w", path, unpath(err))
	}
	defer f.Close()
	how := syscall.LOCK_EX
	if o.ReadOnly {
		how = syscall.LOCK_SH
	}
	deadline := time.Now().Add(o.Timeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("store: lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("store: database %s is %w (timeout %s)", path, ErrLocked, o.Timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck // close releases it anyway

	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store: stat %s: %w", path, unpath(err))
	}
	size := info.Size()
	if size == 0 {
		if o.ReadOnly {
			return fmt.Errorf("store: database %s: %w: empty file", path, ErrCorrupt)
		}
		return nil // bbolt initialises empty files
	}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("store: database %s: %w: "+format, append([]any{path, ErrCorrupt}, args...)...)
	}
	buf := make([]byte, pageHeaderSize+metaLen)
	if _, err := f.ReadAt(buf, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return corrupt("file is only %d bytes", size)
		}
		return fmt.Errorf("store: read %s: %w", path, unpath(err))
	}
	m0, err0 := parseMeta(buf)
	pageSize := m0.pageSize
	if err0 != nil {
		// The first meta page may be the torn one; bbolt then finds the
		// page size from the second. Try the usual sizes.
		pageSize = uint32(os.Getpagesize())
	}
	best, bestErr := m0, err0
	for _, ps := range []uint32{pageSize, 4096, 8192, 16384, 65536} {
		if int64(ps)+int64(len(buf)) > size {
			continue
		}
		if _, err := f.ReadAt(buf, int64(ps)); err != nil {
			continue
		}
		m1, err1 := parseMeta(buf)
		if err1 != nil || m1.pageSize != ps {
			continue
		}
		if bestErr != nil || m1.txid > best.txid {
			best, bestErr = m1, nil
		}
		break
	}
	if bestErr != nil {
		return corrupt("%v", bestErr)
	}
	if need := int64(best.pgid) * int64(best.pageSize); need > size {
		return corrupt("file is %d bytes but its meta page (txid %d) needs %d", size, best.txid, need)
	}
	// A read-write open loads the freelist inside bbolt.Open, where a panic
	// would leave the file mapped and locked: check that page here. Other
	// pages are read in transactions, whose panics view/update recover.
	if err := checkFreelist(f, best); err != nil {
		return corrupt("freelist: %v", err)
	}
	return nil
}

func checkFreelist(f *os.File, m boltMeta) error {
	const freelistFlag = 0x10
	if m.freelist == math.MaxUint64 { // not synced; bbolt rebuilds it
		return nil
	}
	if m.freelist < 2 || m.freelist >= m.pgid {
		return fmt.Errorf("page %d outside the file's %d pages", m.freelist, m.pgid)
	}
	ps := int64(m.pageSize)
	hdr := make([]byte, pageHeaderSize)
	if _, err := f.ReadAt(hdr, int64(m.freelist)*ps); err != nil {
		return err
	}
	le := binary.LittleEndian
	id, flags, count, overflow := le.Uint64(hdr), le.Uint16(hdr[8:]), uint64(le.Uint16(hdr[10:])), uint64(le.Uint32(hdr[12:]))
	if id != m.freelist || flags != freelistFlag {
		return fmt.Errorf("page %d identifies as page %d with flags %#x", m.freelist, id, flags)
	}
	if m.freelist+overflow >= m.pgid {
		return fmt.Errorf("page %d overflows the file", m.freelist)
	}
	body := make([]byte, (overflow+1)*uint64(ps)-pageHeaderSize)
	if _, err := f.ReadAt(body, int64(m.freelist)*ps+pageHeaderSize); err != nil {
		return err
	}
	if count == 0xFFFF { // the real count is the first element
		count = le.Uint64(body)
		body = body[8:]
	}
	if count > uint64(len(body)/8) {
		return fmt.Errorf("%d ids do not fit in %d pages", count, overflow+1)
	}
	for i := range count {
		if p := le.Uint64(body[8*i:]); p < 2 || p >= m.pgid {
			return fmt.Errorf("free page %d outside the file's %d pages", p, m.pgid)
		}
	}
	return nil
}
