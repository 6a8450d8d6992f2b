package snapshot

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// kindConstants returns every constant of type Kind declared in the
// package's source, so that a kind added without an entry in the kinds
// table is caught.
func kindConstants(t *testing.T) map[Kind]string {
	t.Helper()
	out := map[Kind]string{}
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Kind" {
					continue
				}
				for i, name := range vs.Names {
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok {
						t.Fatalf("%s: Kind constant %s is not a string literal", e.Name(), name.Name)
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					out[Kind(v)] = name.Name
				}
			}
		}
	}
	return out
}

func TestEveryKindHasSeverityAndAlertName(t *testing.T) {
	consts := kindConstants(t)
	if len(consts) < 13 {
		t.Fatalf("found %d Kind constants, want at least 13", len(consts))
	}
	for k, name := range consts {
		i, ok := k.Info()
		if !ok {
			t.Errorf("kind %s (%q) is missing from the kinds table", name, k)
			continue
		}
		if i.AlertName == "" || !strings.HasPrefix(i.AlertName, "Exposure") {
			t.Errorf("kind %q has alertname %q, want Exposure...", k, i.AlertName)
		}
		if i.Severity < SeverityInfo || i.Severity > SeverityCritical {
			t.Errorf("kind %q has no severity (%v)", k, i.Severity)
		}
	}
	seen := map[Kind]bool{}
	for _, i := range Kinds() {
		if seen[i.Kind] {
			t.Errorf("kind %q listed twice", i.Kind)
		}
		seen[i.Kind] = true
		if _, ok := consts[i.Kind]; !ok {
			t.Errorf("kind %q of the table has no constant", i.Kind)
		}
	}
}

func TestKindDefaults(t *testing.T) {
	if got := Kind("something_new").Severity(); got != SeverityWarning {
		t.Errorf("unknown kind severity = %v, want warning", got)
	}
	if got := Kind("something_new").AlertName(); got != "ExposureChange" {
		t.Errorf("unknown kind alertname = %q", got)
	}
	for _, s := range Severities() {
		v, err := ParseSeverity(s)
		if err != nil || v.String() != s {
			t.Errorf("ParseSeverity(%q) = %v, %v", s, v, err)
		}
	}
	if v, err := ParseSeverity(""); err != nil || v != SeverityInfo {
		t.Errorf(`ParseSeverity("") = %v, %v`, v, err)
	}
	if _, err := ParseSeverity("fatal"); err == nil {
		t.Error("ParseSeverity(fatal) accepted")
	}
}

// TestReadmeKindTable keeps the README's table of kinds in step with the
// kinds table: each row's kinds carry the row's alertnames, sort and
// severity.
func TestReadmeKindTable(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	found := map[Kind]bool{}
	for line := range strings.SplitSeq(string(b), "\n") {
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 4 || !strings.HasPrefix(cells[1], "Exposure") {
			continue
		}
		var ks []Kind
		for f := range strings.SplitSeq(cells[0], ",") {
			ks = append(ks, Kind(strings.Fields(f)[0]))
		}
		names := strings.Split(cells[1], ", ")
		for j, k := range ks {
			i, ok := k.Info()
			if !ok {
				t.Errorf("README lists unknown kind %q", k)
				continue
			}
			found[k] = true
			want := names[min(j, len(names)-1)]
			sort := map[bool]string{true: "condition", false: "event"}[i.Condition]
			if i.AlertName != want || sort != cells[2] || i.Severity.String() != cells[3] {
				t.Errorf("README row %q disagrees with kind %q: %s %s %s", line, k, i.AlertName, sort, i.Severity)
			}
		}
	}
	for _, i := range Kinds() {
		if !found[i.Kind] {
			t.Errorf("README's table of kinds lacks %q", i.Kind)
		}
	}
}
