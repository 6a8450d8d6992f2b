package store

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/exposure-monitor/exposure/snapshot"
)

const sep = 0x00

func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("store: empty %s", what)
	}
	if strings.IndexByte(s, sep) >= 0 {
		return fmt.Errorf("store: %s %q contains a NUL byte", what, s)
	}
	return nil
}

// prefix is name + 0x00, the start of every key of one target or receiver.
func prefix(name string) []byte {
	b := make([]byte, 0, len(name)+1)
	b = append(b, name...)
	return append(b, sep)
}

func putTime(b []byte, t int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(t))
}

// scanKey is target 0x00 started-nanos.
func scanKey(target string, started int64) []byte {
	return putTime(prefix(target), started)
}

func splitScanKey(k []byte) (target string, started int64, ok bool) {
	if len(k) < 10 || k[len(k)-9] != sep {
		return "", 0, false
	}
	return string(k[:len(k)-9]), int64(binary.BigEndian.Uint64(k[len(k)-8:])), true
}

// hostKey is target 0x00 address.
func hostKey(target, addr string) []byte {
	return append(prefix(target), addr...)
}

// portKey is target 0x00 address 0x00 port protocol.
func portKey(target, addr string, port uint16, proto string) []byte {
	b := append(prefix(target), addr...)
	b = append(b, sep)
	b = binary.BigEndian.AppendUint16(b, port)
	return append(b, proto...)
}

func splitPortKey(target string, k []byte) (addr string, port uint16, proto string, ok bool) {
	rest := k[len(target)+1:]
	i := bytes.IndexByte(rest, sep)
	if i < 0 || len(rest) < i+3 {
		return "", 0, "", false
	}
	return string(rest[:i]), binary.BigEndian.Uint16(rest[i+1:]), string(rest[i+3:]), true
}

// changeKey is target 0x00 at-nanos seq.
func changeKey(target string, at int64, seq uint64) []byte {
	b := putTime(prefix(target), at)
	return binary.BigEndian.AppendUint64(b, seq)
}

func outboxKey(receiver, key string) []byte {
	return append(prefix(receiver), key...)
}

// encode prepends the value version byte to the JSON of v.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(valueV1)
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return b[:len(b)-1], nil // drop the encoder's newline
}

// decode checks the version byte and unmarshals the rest. The caller's v
// owns its memory afterwards, so decoding inside a transaction copies.
func decode(b []byte, v any) error {
	if len(b) == 0 {
		return fmt.Errorf("empty value")
	}
	if b[0] != valueV1 {
		return fmt.Errorf("value format version %d, want %d", b[0], valueV1)
	}
	return json.Unmarshal(b[1:], v)
}

func encodeBlob(s *snapshot.Snapshot) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(valueV1)
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err := json.NewEncoder(zw).Encode(s); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeBlob(b []byte) (*snapshot.Snapshot, error) {
	if len(b) == 0 || b[0] != valueV1 {
		return nil, fmt.Errorf("bad blob header")
	}
	zr, err := gzip.NewReader(bytes.NewReader(b[1:]))
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(zr, 1<<30))
	if err != nil {
		return nil, err
	}
	var s snapshot.Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// scanRecord is the per-scan value: everything a snapshot has except its
// hosts, which come from the runs (or the blob).
type scanRecord struct {
	ID       string           `json:"i"`
	Finished int64            `json:"f"`
	Complete bool             `json:"c,omitempty"`
	Quality  snapshot.Quality `json:"q"`
	HostsUp  int              `json:"h,omitempty"`
	Open     int              `json:"o,omitempty"`
	// Blob is set when the hosts are in the blobs bucket rather than the runs.
	Blob bool `json:"b,omitempty"`
}

// head is the per-target value: the scans the runs are current for.
type head struct {
	Last         int64 `json:"l"`
	LastComplete int64 `json:"c,omitempty"`
}

// run is one interval of one host or port in one state. End zero means the
// run is still current. Last is the time of the last scan that saw it,
// written when the run ends (for a current run it is the head's
// LastComplete).
type run struct {
	First int64   `json:"f"`
	Last  int64   `json:"l,omitempty"`
	End   int64   `json:"e,omitempty"`
	State string  `json:"s"`
	Hist  []value `json:"h,omitempty"`
}

// value is one hostname (hosts) or service (ports) seen from At on.
type value struct {
	At int64           `json:"t"`
	V  json.RawMessage `json:"v,omitempty"`
}

func (r *run) contains(t int64) bool {
	return r.First <= t && (r.End == 0 || t < r.End)
}

func (r *run) valueAt(t int64) json.RawMessage {
	var v json.RawMessage
	for _, h := range r.Hist {
		if h.At > t {
			break
		}
		v = h.V
	}
	return v
}

func (r *run) current() json.RawMessage {
	if len(r.Hist) == 0 {
		return nil
	}
	return r.Hist[len(r.Hist)-1].V
}

// hostValue is the value a host's run keeps when the host has unlisted
// ports: its hostname and their counts. A host without them keeps its
// hostname alone, as a JSON string (the format before counts were kept),
// so the value changes only when what it says does.
type hostValue struct {
	Name     string            `json:"n,omitempty"`
	Unlisted snapshot.Unlisted `json:"u"`
}

// encodeHostValue is the run value of h: nil, its hostname as a JSON
// string, or a hostValue.
func encodeHostValue(h snapshot.Host) json.RawMessage {
	var v []byte
	switch {
	case h.Unlisted != (snapshot.Unlisted{}):
		v, _ = json.Marshal(hostValue{Name: h.Hostname, Unlisted: h.Unlisted})
	case h.Hostname != "":
		v, _ = json.Marshal(h.Hostname)
	}
	return v
}

// decodeHostValue sets the hostname and unlisted counts of h from a run
// value written by encodeHostValue.
func decodeHostValue(v json.RawMessage, h *snapshot.Host) error {
	if len(v) > 0 && v[0] == '{' {
		var hv hostValue
		if err := json.Unmarshal(v, &hv); err != nil {
			return err
		}
		h.Hostname, h.Unlisted = hv.Name, hv.Unlisted
		return nil
	}
	return json.Unmarshal(v, &h.Hostname)
}

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// parseID splits a snapshot id of the form target/nanos (snapshot.NewID).
func parseID(id string) (string, int64, bool) {
	i := strings.LastIndexByte(id, '/')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return id[:i], n, true
}

// Runs are the bulk of the reads of a commit and of every snapshot rebuild,
// so they use a compact binary form rather than JSON: after the version
// byte, a uvarint count of runs, and per run varints first, last, end, the
// state (uvarint length + bytes) and a uvarint count of values, each a
// varint time and a length-prefixed JSON value (length 0: none).

func encodeRuns(rs []run) []byte {
	b := make([]byte, 0, 64)
	b = append(b, valueV1)
	b = binary.AppendUvarint(b, uint64(len(rs)))
	for _, r := range rs {
		b = binary.AppendVarint(b, r.First)
		b = binary.AppendVarint(b, r.Last)
		b = binary.AppendVarint(b, r.End)
		b = binary.AppendUvarint(b, uint64(len(r.State)))
		b = append(b, r.State...)
		b = binary.AppendUvarint(b, uint64(len(r.Hist)))
		for _, h := range r.Hist {
			b = binary.AppendVarint(b, h.At)
			b = binary.AppendUvarint(b, uint64(len(h.V)))
			b = append(b, h.V...)
		}
	}
	return b
}

type runReader struct {
	b    []byte
	err  error
	view bool // values alias b (viewRuns)
}

func (r *runReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// uvarint reads a count or length, which can be no larger than the bytes
// left (every counted item takes at least one byte).
func (r *runReader) uvarint() int {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > uint64(len(r.b)-n) {
		r.err = fmt.Errorf("bad length")
		return 0
	}
	r.b = r.b[n:]
	return int(v)
}

// internState returns the states every run has without allocating them.
func internState(b []byte) string {
	switch string(b) {
	case snapshot.StateOpen:
		return snapshot.StateOpen
	case snapshot.StateClosed:
		return snapshot.StateClosed
	case snapshot.StateFiltered:
		return snapshot.StateFiltered
	case snapshot.StateOpenFiltered:
		return snapshot.StateOpenFiltered
	case snapshot.HostUp:
		return snapshot.HostUp
	case snapshot.HostDown:
		return snapshot.HostDown
	}
	return string(b)
}

func (r *runReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil || n == 0 {
		return nil
	}
	out := r.b[:n:n]
	if !r.view {
		out = bytes.Clone(out) // the value outlives the transaction
	}
	r.b = r.b[n:]
	return out
}

// decodeRuns decodes a key's runs into memory of their own.
func decodeRuns(b []byte) ([]run, error) { return decodeRunsIn(b, false, nil) }

// viewRuns decodes a key's runs with their values aliasing b: for runs
// used and dropped before the transaction ends or writes (bbolt may remap
// its file on a write).
func viewRuns(b []byte) ([]run, error) { return decodeRunsIn(b, true, nil) }

// runScratch is the memory viewRuns of key after key reuses: a walk over
// a target's keys decodes each into the same runs.
type runScratch struct{ runs []run }

// view is viewRuns into the scratch's memory, valid until the next call.
func (sc *runScratch) view(b []byte) ([]run, error) {
	rs, err := decodeRunsIn(b, true, sc.runs)
	if err == nil {
		sc.runs = rs
	}
	return rs, err
}

func decodeRunsIn(b []byte, view bool, scratch []run) ([]run, error) {
	if len(b) == 0 || b[0] != valueV1 {
		return nil, fmt.Errorf("bad runs header")
	}
	r := &runReader{b: b[1:], view: view}
	n := r.uvarint()
	rs := scratch[:0]
	if cap(rs) < n {
		rs = make([]run, 0, n)
	}
	rs = rs[:n]
	for i := range rs {
		hist := rs[i].Hist[:0]
		rs[i] = run{}
		rs[i].First, rs[i].Last, rs[i].End = r.varint(), r.varint(), r.varint()
		rs[i].State = internState(r.bytes())
		if n := r.uvarint(); n > 0 {
			if cap(hist) < n {
				hist = make([]value, n)
			}
			rs[i].Hist = hist[:n]
			for j := range rs[i].Hist {
				rs[i].Hist[j].At = r.varint()
				rs[i].Hist[j].V = r.bytes()
			}
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	return rs, nil
}
