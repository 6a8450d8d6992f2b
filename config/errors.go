package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a configuration file. It names the file, the line
// of the offending YAML node, the field path (targets[2].ports) and the bad
// value, so an operator can fix it without guessing:
//
//	exposure.yml:14: targets[2].ports: "80-70": range end before start
type Error struct {
	File   string // path as given to Load, or the name given to Parse
	Line   int    // 1-based; 0 when unknown
	Field  string // dotted path; empty for YAML syntax errors
	Value  string // offending value; empty when there is none (a missing field)
	Reason string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	if e.Value != "" {
		fmt.Fprintf(&b, "%q: ", e.Value)
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Errors holds every problem found in one file, in file order. Load and
// Parse return it (as error) whenever they find at least one problem.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find the individual *Error values.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sort orders errors by line, keeping the discovery order of errors on the
// same line, and drops exact duplicates (an alias can repeat a node).
func (es Errors) sort() Errors {
	slices.SortStableFunc(es, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	return slices.CompactFunc(es, func(a, b *Error) bool { return *a == *b })
}
