// Package store keeps the monitor's memory in one bbolt file: scan records,
// per-(target, address, port, protocol) observation intervals, the change
// log, the alert outbox and the diff engine's state.
//
// # Schema (version 1)
//
// Every bucket is created when the store opens; the meta bucket holds the
// schema version ("schema", big-endian uint32). Opening a file written by a
// newer schema fails with ErrSchema; older files are migrated in place by the
// functions returned from migrations(), one step per version, inside the
// opening transaction.
//
// Every value starts with a format version byte (valueV1) followed by the
// payload: JSON, except the runs (a compact varint encoding, see
// encodeRuns: they are read in bulk by every commit and rebuild) and the
// blobs (gzip). Keys (0x00 separates parts; names may not contain it):
//
//	scans    target 0x00 started(8 BE nanos)           -> scan record (id, times, complete, quality, counts)
//	blobs    same key as scans                          -> gzip JSON of the whole snapshot (incomplete or out-of-order scans only)
//	ids      snapshot id                                -> scans key (only for ids that are not target/started-nanos)
//	targets  target                                     -> last scan and last complete scan (the head of the intervals)
//	hosts    target 0x00 address                        -> runs of the host's state, with hostname history
//	ports    target 0x00 address 0x00 port(2 BE) proto  -> runs of the port's state, with service history
//	changes  target 0x00 at(8 BE nanos) seq(8 BE)       -> one snapshot.Change as JSON
//	outbox   receiver 0x00 key                          -> one OutboxEntry as JSON
//	diffstate target                                    -> opaque bytes of package diff
//
// A run is an interval [first, end) during which an address or port was seen
// in one state. A run whose end is zero is still current: it lasts until a
// later complete scan supersedes it, so a complete scan that changes nothing
// writes only its scan record and the target head and touches no host or port
// key. The snapshot of a complete scan at time t is rebuilt from the runs
// that contain t and, within each run, the last history value at or before
// t. Incomplete scans never end a run (an incomplete scan is no evidence that
// something closed); they are kept whole, compressed, in the blobs bucket, as
// are complete scans that arrive older than the target's head.
//
// # Cost
//
// Measured with BenchmarkUnchangedScan (250 hosts, 1,000 open ports with
// services, 1,000 unchanged complete scans, fsync on): each scan grows
// bbolt's allocated size by about 414 bytes (its scan record, the target
// head and B+tree overhead); the file itself grows in bbolt's doubling steps
// (about 0.5 to 1 KB per scan over that run). A commit takes about 15 ms
// and rebuilding the latest snapshot about 8 ms on a 2-core machine.
//
// At estate scale (TestEstateBytesPerOpenPort: 65,536 hosts, 98,304 open
// ports with services) the baseline takes 256 bytes of allocated space per
// open port and commits in about 1.8 s: the host and port runs are written
// in key order into pages packed 95% full (runsFillPercent). An unchanged
// re-scan of the estate allocates nothing new.
//
// A scan of more than defaultCommitBatch hosts and ports stages its runs
// in transactions of that many keys before the one that writes its scan
// record, with a pending record that Open rolls back after a crash (see
// stage.go): a /16 baseline then holds one batch in bbolt's memory, not
// 163,840 keys and their pages.
//
// Prune works in transactions of at most defaultPruneBatch keys of one
// bucket, so a scan's commit never waits for more than one batch
// (BenchmarkPruneYear: a year of daily scans of an estate with daily churn,
// pruned to 90 days while scans commit).
package store
