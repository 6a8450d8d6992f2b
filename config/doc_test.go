package config

import (
	"os"
	"reflect"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// yamlFields lists the yaml names of every field reachable from t.
func yamlFields(t reflect.Type, seen map[reflect.Type]bool, out map[string]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] || t == durationType {
		return
	}
	seen[t] = true
	for name, idx := range fieldIndex(t) {
		out[name] = true
		yamlFields(t.FieldByIndex(idx).Type, seen, out)
	}
}

// TestDocCoversEveryField keeps the reference in doc.go complete: every
// field of the schema appears there as "name:".
func TestDocCoversEveryField(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	fields := map[string]bool{}
	yamlFields(reflect.TypeFor[Config](), map[reflect.Type]bool{}, fields)
	require.Greater(t, len(fields), 40)
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	for f := range fields {
		require.Regexp(t, `(?m)[\s{,]`+regexp.QuoteMeta(f)+`:`, string(doc), "doc.go does not document %q", f)
		require.Regexp(t, `(?m)[\s{,]`+regexp.QuoteMeta(f)+`:`, string(readme), "README.md does not document %q", f)
	}
}
