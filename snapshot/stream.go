package snapshot

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"iter"
)

// WriteJSON writes the snapshot document of head with the hosts of the
// sequence in place of head.Hosts, one host at a time, so that a snapshot
// of a large estate is never held whole, neither as hosts nor as JSON. The
// bytes are those json.Encoder with SetIndent("", indent) writes for the
// whole snapshot, trailing newline included.
func WriteJSON(w io.Writer, head *Snapshot, hosts iter.Seq[*Host], indent string) error {
	h := *head
	h.Hosts = []Host{}
	marshal := func(v any, prefix string) ([]byte, error) { return json.MarshalIndent(v, prefix, indent) }
	if indent == "" { // as json.Encoder: no indent, no newlines
		marshal = func(v any, _ string) ([]byte, error) { return json.Marshal(v) }
	}
	doc, err := marshal(&h, "")
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	// Hosts is the last field, so the document ends with "[]\n}" (or
	// "[]}" without an indent): the hosts go between the brackets.
	i := bytes.LastIndex(doc, []byte("[]"))
	if i < 0 {
		return fmt.Errorf("encode snapshot: no hosts array in %q", doc[max(0, len(doc)-40):])
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(doc[:i+1])
	sep, inner := []byte(","), ""
	if indent != "" {
		sep, inner = []byte(",\n"+indent+indent), "\n"+indent+indent
	}
	n := 0
	for host := range hosts {
		b, err := marshal(host, indent+indent)
		if err != nil {
			return fmt.Errorf("encode snapshot host %s: %w", host.Address, err)
		}
		if n == 0 {
			bw.WriteString(inner)
		} else {
			bw.Write(sep)
		}
		bw.Write(b)
		n++
	}
	if n > 0 && indent != "" {
		bw.WriteString("\n" + indent)
	}
	bw.Write(doc[i+1:])
	bw.WriteByte('\n')
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

// All yields pointers to the snapshot's hosts, for WriteJSON.
func (s *Snapshot) All() iter.Seq[*Host] {
	return func(yield func(*Host) bool) {
		for i := range s.Hosts {
			if !yield(&s.Hosts[i]) {
				return
			}
		}
	}
}
