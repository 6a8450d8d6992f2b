package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/exposure-monitor/exposure/diff"
	"github.com/exposure-monitor/exposure/monitor"
	"github.com/exposure-monitor/exposure/nmapxml"
	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
)

type importFlags struct {
	path   *string
	target string
	files  []string
}

func importCommand(app *kingpin.Application) (string, runFunc) {
	f := &importFlags{}
	cmd := app.Command("import", "Read nmap XML files (-oX) into the store as snapshots of a target, oldest first, so history, diff, show and the daemon's next diff go on from them.")
	f.path = storageFlag(cmd)
	cmd.Flag("target", "Target the scans belong to.").Required().StringVar(&f.target)
	cmd.Arg("file", "nmap XML files.").Required().ExistingFilesVar(&f.files)
	return cmd.FullCommand(), f.run
}

// imported is one file read.
type imported struct {
	file string
	snap *snapshot.Snapshot
}

func (f *importFlags) run(ctx context.Context, e *env) error {
	var scans []imported
	for _, file := range f.files {
		sn, err := readXMLFile(file, f.target)
		if err != nil {
			return usageError{err}
		}
		scans = append(scans, imported{file, sn})
	}
	slices.SortStableFunc(scans, func(a, b imported) int { return a.snap.StartedAt.Compare(b.snap.StartedAt) })
	for i := 1; i < len(scans); i++ {
		if scans[i].snap.StartedAt.Equal(scans[i-1].snap.StartedAt) {
			return usagef("%s and %s: both scans started at %s", scans[i-1].file, scans[i].file, scans[i].snap.StartedAt.Format(time.RFC3339))
		}
	}
	path := *f.path
	if path == "" {
		path = monitor.DefaultStoragePath(os.Getenv("STATE_DIRECTORY"))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	st, err := store.Open(path, store.Options{Timeout: time.Second})
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("import: %w; a running daemon holds it: stop it for the import", err)
	}
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer st.Close()
	return importScans(ctx, e, st, f.target, scans)
}

func readXMLFile(file, target string) (*snapshot.Snapshot, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	sn, err := nmapxml.Read(fh, nmapxml.ReadOptions{Target: target})
	if err != nil {
		return nil, fmt.Errorf("%s:%w", file, colon(err))
	}
	return sn, nil
}

// colon puts nmapxml's "line N: ..." after the file name as file:N: ...
func colon(err error) error {
	var xe *nmapxml.Error
	if errors.As(err, &xe) {
		c := *xe
		return &lineError{c}
	}
	return fmt.Errorf(" %w", err)
}

type lineError struct{ e nmapxml.Error }

func (l *lineError) Error() string {
	s := l.e.Error() // "line N: rest"
	return fmt.Sprintf("%d%s", l.e.Line, s[len(fmt.Sprintf("line %d", l.e.Line)):])
}

func (l *lineError) Unwrap() error { return &l.e }

// importScans commits each scan with its changes against the previous
// complete one, as the daemon would have recorded them without its
// confirmation re-probes: the first complete scan of a target is its
// baseline.
func importScans(ctx context.Context, e *env, st *store.Store, target string, scans []imported) error {
	latest, err := st.Latest(target)
	switch {
	case errors.Is(err, store.ErrNotFound):
		latest = nil
	case err != nil:
		return fmt.Errorf("import: %w", err)
	}
	prev, err := st.LatestComplete(target)
	if errors.Is(err, store.ErrNotFound) {
		prev = nil
	} else if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	raw, err := st.DiffState(target)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	hadState := len(raw) > 0
	n := 0
	for _, sc := range scans {
		sn := sc.snap
		if latest != nil && !sn.StartedAt.After(latest.StartedAt) {
			if latest.ID == sn.ID {
				e.logger.Info("already imported; skipped", "file", sc.file, "snapshot", sn.ID)
				continue
			}
			return usagef("%s: scan started at %s, not after the target's latest stored scan %s (%s): import scans in time order, before the target's newer ones",
				sc.file, sn.StartedAt.UTC().Format(time.RFC3339), latest.ID, latest.StartedAt.UTC().Format(time.RFC3339))
		}
		var changes []snapshot.Change
		if prev != nil {
			changes = diff.Compare(prev, sn, diff.Policy{})
		}
		c := store.Commit{Snapshot: sn, Changes: changes}
		if hadState {
			// The daemon's reported view predates these scans: let its
			// next scan rebuild it from the newest imported one.
			c.DiffState = []byte{}
		}
		if err := st.Commit(ctx, c); err != nil {
			return fmt.Errorf("import %s: %w", sc.file, err)
		}
		n++
		state := "complete"
		if !sn.Complete {
			state = "incomplete (the file was cut short)"
		}
		fmt.Fprintf(e.stdout, "%s: %s, %s, %s up, %s, %s\n", sc.file, sn.ID, state,
			counted(sn.HostsUp(), "host", "hosts"), counted(sn.OpenPorts(), "open port", "open ports"),
			counted(len(changes), "change", "changes"))
		latest = sn
		if sn.Complete {
			prev = sn
		}
	}
	_, err = fmt.Fprintf(e.stdout, "imported %s into target %s\n", counted(n, "scan", "scans"), target)
	return err
}
