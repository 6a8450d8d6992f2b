package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/exposure-monitor/exposure/scanner/spec"
)

// maxNodes bounds the nodes decoded from one document, so aliases that
// repeat a large subtree many times cannot blow up memory or time. A real
// configuration of 10,000 targets uses well under 100,000 nodes.
const maxNodes = 1 << 18

// decoder turns a yaml.Node tree into Go values strictly: unknown and
// duplicate keys and type mismatches are errors, and every error carries
// the line of the node it is about. It does not stop at the first error,
// so one run reports everything wrong with a file.
type decoder struct {
	file string
	errs Errors
	// set maps the path of every field present (and not null) in the file
	// to the line of its key; validation uses it to tell an explicit value
	// from a default and to place its errors.
	set    map[string]int
	budget int
	// bad holds the paths with decoding errors: validation stays quiet
	// about them (and what lies below), since their values are not known.
	bad map[string]bool
	// fields caches fieldIndex per struct type for this decode.
	fields map[reflect.Type]map[string][]int
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, set: map[string]int{}, bad: map[string]bool{},
		fields: map[reflect.Type]map[string][]int{}, budget: maxNodes}
}

func (d *decoder) errorf(line int, field, value, format string, args ...any) {
	d.bad[field] = true
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Field: field, Value: value, Reason: fmt.Sprintf(format, args...)})
}

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parse reads the YAML text and returns its root mapping (an empty mapping
// for an empty document).
func (d *decoder) parse(data []byte) (*yaml.Node, bool) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := err.Error()
		if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			if isParserProblem(m[2]) {
				// yaml.v3 prints the 0-based line for parser (not scanner)
				// errors: the start of the construct that failed.
				line++
			}
			d.errorf(line, "", "", "invalid YAML: %s", m[2])
		} else {
			d.errorf(0, "", "", "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
		}
		return nil, false
	}
	if doc.Kind == 0 || len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, true
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		d.errorf(root.Line, "", "", "expected a mapping at the top level, got %s", kindName(root))
		return nil, false
	}
	return root, true
}

// isParserProblem reports whether msg is one of the problems yaml.v3's
// parser (rather than its scanner) reports.
func isParserProblem(msg string) bool {
	for _, p := range []string{"did not find expected ", "found duplicate %", "found incompatible YAML document", "found undefined tag handle"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// exhausted reports whether the node budget ran out; the decoded values
// are then incomplete and not worth validating.
func (d *decoder) exhausted() bool { return d.budget < 0 }

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a scalar"
	}
	return "nothing"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decode fills out (a pointer) from n, reporting errors under path.
func (d *decoder) decode(n *yaml.Node, out any, path string) {
	d.value(n, reflect.ValueOf(out).Elem(), path)
}

var (
	durationType  = reflect.TypeFor[model.Duration]()
	protoPortType = reflect.TypeFor[spec.ProtoPort]()
)

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if v.Kind() == reflect.Pointer && v.IsNil() {
		v.Set(reflect.New(v.Type().Elem())) // never leave nil elements behind
	}
	if d.budget--; d.budget < 0 {
		if d.budget == -1 {
			d.errorf(n.Line, path, "", "document too large or too many aliases (more than %d nodes)", maxNodes)
		}
		return
	}
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.Kind() == reflect.Pointer {
		if isNull(n) { // "log:" alone means an empty log block
			return
		}
		v = v.Elem()
	}
	if isNull(n) {
		return
	}
	switch v.Type() {
	case durationType:
		d.duration(n, v, path)
		return
	case protoPortType:
		if p, ok := d.protoPort(n, path); ok {
			v.Set(reflect.ValueOf(p))
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structure(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	case reflect.Map:
		d.mapping(n, v, path)
	case reflect.String:
		if d.scalar(n, path, "a string") {
			v.SetString(n.Value)
		}
	case reflect.Bool:
		if !d.scalar(n, path, "true or false") {
			return
		}
		if n.Tag != "!!bool" {
			d.errorf(n.Line, path, n.Value, "expected true or false")
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.errorf(n.Line, path, n.Value, "expected true or false")
			return
		}
		v.SetBool(b)
	case reflect.Int:
		if !d.scalar(n, path, "an integer") {
			return
		}
		var i int
		if n.Tag != "!!int" || n.Decode(&i) != nil {
			d.errorf(n.Line, path, n.Value, "expected an integer")
			return
		}
		v.SetInt(int64(i))
	case reflect.Uint16:
		if p, ok := d.port(n, path); ok {
			v.SetUint(uint64(p))
		}
	case reflect.Float64:
		if !d.scalar(n, path, "a number") {
			return
		}
		var f float64
		if (n.Tag != "!!float" && n.Tag != "!!int") || n.Decode(&f) != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.errorf(n.Line, path, n.Value, "expected a number")
			return
		}
		v.SetFloat(f)
	default:
		panic(fmt.Sprintf("config: no decoder for %s", v.Type())) // programming error, caught by tests
	}
}

// scalar reports whether n is a scalar, and records an error if not.
func (d *decoder) scalar(n *yaml.Node, path, want string) bool {
	if n.Kind == yaml.ScalarNode {
		return true
	}
	d.errorf(n.Line, path, "", "expected %s, got %s", want, kindName(n))
	return false
}

func (d *decoder) port(n *yaml.Node, path string) (uint16, bool) {
	if !d.scalar(n, path, "a port number") {
		return 0, false
	}
	p, err := strconv.ParseUint(n.Value, 10, 64)
	if err != nil {
		d.errorf(n.Line, path, n.Value, "expected a port number")
		return 0, false
	}
	if p < 1 || p > 65535 {
		d.errorf(n.Line, path, n.Value, "port out of range 1-65535")
		return 0, false
	}
	return uint16(p), true
}

// protoPort reads a port with its protocol as a port spec writes it: 22
// or T:22 (TCP), U:161 (UDP).
func (d *decoder) protoPort(n *yaml.Node, path string) (spec.ProtoPort, bool) {
	if !d.scalar(n, path, "a port (22, T:22 or U:161)") {
		return spec.ProtoPort{}, false
	}
	p, err := spec.ParseProtoPort(n.Value)
	if err != nil {
		reason := err.Error()
		var se *spec.Error
		if errors.As(err, &se) {
			reason = se.Reason
		}
		d.errorf(n.Line, path, n.Value, "%s", reason)
		return spec.ProtoPort{}, false
	}
	return p, true
}

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	if !d.scalar(n, path, "a duration") {
		return
	}
	dur, err := model.ParseDuration(n.Value)
	if err != nil {
		d.errorf(n.Line, path, n.Value, "not a duration (examples: 30s, 15m, 1h30m, 90d)")
		return
	}
	v.Set(reflect.ValueOf(dur))
}

// fieldIndex maps the yaml names of t's fields, inline structs flattened,
// to their index paths.
func fieldIndex(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("yaml")
		if !ok || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			for k, idx := range fieldIndex(f.Type) {
				out[k] = append([]int{i}, idx...)
			}
			continue
		}
		out[name] = []int{i}
	}
	return out
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	fields, ok := d.fields[v.Type()]
	if !ok {
		fields = fieldIndex(v.Type())
		d.fields[v.Type()] = fields
	}
	seen := map[string]int{}
	d.entries(n, path, "a field name", func(k, val *yaml.Node, p string) {
		if first, dup := seen[k.Value]; dup {
			d.errorf(k.Line, p, "", "duplicate field (first set at line %d)", first)
			return
		}
		seen[k.Value] = k.Line
		idx, ok := fields[k.Value]
		if !ok {
			if near := closest(k.Value, fields); near != "" {
				d.errorf(k.Line, p, "", "unknown field, did you mean %q?", near)
			} else {
				d.errorf(k.Line, p, "", "unknown field")
			}
			return
		}
		f := v.FieldByIndex(idx)
		if f.Kind() != reflect.Pointer && isNull(resolve(val)) {
			return // "retries:" alone keeps the default
		}
		d.set[p] = k.Line
		d.value(val, f, p)
	})
}

// closest returns the known field name nearest to key by edit distance,
// or "" when none is close enough to be a likely misspelling: at most one
// edit in three characters of the key, and at least one. Ties go to the
// name that sorts first, so the hint is stable.
func closest(key string, fields map[string][]int) string {
	limit := max(1, len([]rune(key))/3)
	best, bestD := "", limit+1
	for name := range fields {
		d := editDistance(strings.ToLower(key), name)
		if d < bestD || d == bestD && name < best {
			best, bestD = name, d
		}
	}
	if bestD > limit {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// entries calls fn with the key, the value and the path of each entry of
// mapping n, after reporting a node that is not a mapping, keys that are
// not scalars (what says what a key should be) and merge keys.
func (d *decoder) entries(n *yaml.Node, path, what string, fn func(k, val *yaml.Node, p string)) bool {
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, path, "", "expected a mapping, got %s", kindName(n))
		return false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k.Line, path, "", "expected %s, got %s", what, kindName(k))
			continue
		}
		p := join(path, k.Value)
		if k.Tag == "!!merge" {
			d.errorf(k.Line, p, "", "merge keys (<<) are not supported")
			continue
		}
		fn(k, val, p)
	}
	return true
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n.Line, path, "", "expected a list, got %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.set[p] = e.Line
		d.value(e, s.Index(i), p)
	}
	v.Set(s)
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]int{}
	ok := d.entries(n, path, "a key", func(k, val *yaml.Node, p string) {
		key := reflect.New(v.Type().Key()).Elem()
		switch key.Kind() {
		case reflect.String:
			key.SetString(k.Value)
		case reflect.Struct:
			if key.Type() != protoPortType {
				panic(fmt.Sprintf("config: no decoder for map keys of %s", key.Type()))
			}
			pp, ok := d.protoPort(k, p)
			if !ok {
				return
			}
			key.Set(reflect.ValueOf(pp))
			p = join(path, pp.String())
		case reflect.Uint16:
			port, ok := d.port(k, p)
			if !ok {
				return
			}
			key.SetUint(uint64(port))
			p = join(path, strconv.Itoa(int(port)))
		default:
			panic(fmt.Sprintf("config: no decoder for map keys of %s", key.Type()))
		}
		canon := fmt.Sprint(key.Interface())
		if first, dup := seen[canon]; dup {
			d.errorf(k.Line, p, "", "duplicate key (first set at line %d)", first)
			return
		}
		seen[canon] = k.Line
		d.set[p] = k.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		d.value(val, elem, p)
		m.SetMapIndex(key, elem)
	})
	if ok {
		v.Set(m)
	}
}
