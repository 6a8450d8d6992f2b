package snapshot

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"strconv"
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
	var b []byte
	for host := range hosts {
		if indent != "" {
			b, err = appendHost(b[:0], host, indent)
		} else {
			b, err = marshal(host, "")
		}
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

// appendHost appends h as json.MarshalIndent(h, indent+indent, indent)
// writes it, without building it through reflection: the ports of a sweep
// (no service) are written by hand, the rest by encoding/json. A /16 has
// 65,536 hosts, and going through MarshalIndent for each made as much
// garbage as the scan itself.
func appendHost(b []byte, h *Host, indent string) ([]byte, error) {
	p1 := indent + indent + indent // the host's fields
	p2 := p1 + indent              // a port's braces
	p3 := p2 + indent              // a port's fields
	b = append(b, "{\n"...)
	b = appendField(b, p1, "address", h.Address, true)
	if h.Hostname != "" {
		b = appendField(b, p1, "hostname", h.Hostname, true)
	}
	b = appendField(b, p1, "state", h.State, true)
	b = append(b, p1...)
	switch {
	case h.Ports == nil:
		b = append(b, `"ports": null`...)
	case len(h.Ports) == 0:
		b = append(b, `"ports": []`...)
	default:
		b = append(b, "\"ports\": [\n"...)
		for i := range h.Ports {
			p := &h.Ports[i]
			if i > 0 {
				b = append(b, ",\n"...)
			}
			b = append(b, p2...)
			if p.Service != nil {
				pb, err := json.MarshalIndent(p, p2, indent)
				if err != nil {
					return b, err
				}
				b = append(b, pb...)
				continue
			}
			b = append(b, "{\n"...)
			b = append(b, p3...)
			b = append(b, `"port": `...)
			b = strconv.AppendUint(b, uint64(p.Port), 10)
			b = append(b, ",\n"...)
			b = appendField(b, p3, "protocol", p.Protocol, true)
			b = appendField(b, p3, "state", p.State, false)
			b = append(b, p2...)
			b = append(b, '}')
		}
		b = append(b, '\n')
		b = append(b, p1...)
		b = append(b, ']')
	}
	if h.Unlisted != (Unlisted{}) {
		ub, err := json.MarshalIndent(h.Unlisted, p1, indent)
		if err != nil {
			return b, err
		}
		b = append(b, ",\n"...)
		b = append(b, p1...)
		b = append(b, `"unlisted": `...)
		b = append(b, ub...)
	}
	b = append(b, '\n')
	b = append(b, indent+indent...)
	return append(b, '}'), nil
}

// appendField appends `PREFIX"name": "value"` and a comma if more follow,
// then a newline.
func appendField(b []byte, prefix, name, value string, more bool) []byte {
	b = append(b, prefix...)
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, `": `...)
	b = appendString(b, value)
	if more {
		b = append(b, ',')
	}
	return append(b, '\n')
}

// appendString appends s as encoding/json quotes it (HTML characters
// escaped too): by hand for plain ASCII, through json.Marshal otherwise.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
