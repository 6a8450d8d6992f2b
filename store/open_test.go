package store

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOpenErrorsNameThePathOnce: the os error's own "open PATH:" is not
// repeated after the store's prefix, and errors.Is still sees the cause.
func TestOpenErrorsNameThePathOnce(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o600))
	for _, tc := range []struct {
		name string
		path string
		o    Options
		want string
		is   error
	}{
		// preflight's open (read-only needs an existing file)
		{"read-only missing", filepath.Join(dir, "none.db"), Options{ReadOnly: true}, "no such file or directory", fs.ErrNotExist},
		{"not a directory", filepath.Join(file, "x.db"), Options{}, "not a directory", syscall.ENOTDIR},
		// bbolt's open (preflight lets bbolt create a missing file)
		{"missing directory", filepath.Join(dir, "nodir", "x.db"), Options{}, "no such file or directory", fs.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.path, tc.o)
			require.Error(t, err)
			require.Equal(t, "store: open "+tc.path+": "+tc.want, err.Error())
			require.Equal(t, 1, strings.Count(err.Error(), tc.path))
			require.ErrorIs(t, err, tc.is)
		})
	}
}
