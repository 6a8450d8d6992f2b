package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"

	"github.com/exposure-monitor/exposure/internal/textsafe"
	"github.com/exposure-monitor/exposure/snapshot"
)

// storageFlag adds --storage.path with the daemon's default.
func storageFlag(cmd *kingpin.CmdClause) *string {
	return cmd.Flag("storage.path", "Database file (default: $STATE_DIRECTORY/exposure.db under systemd, else ./data/exposure.db).").PlaceHolder("PATH").String()
}

func historyCommand(app *kingpin.Application) (string, runFunc) {
	cmd := app.Command("history", "Print the timeline of changes (oldest first).")
	src := sourceFlags(cmd)
	target := cmd.Flag("target", "Only this target.").String()
	since := cmd.Flag("since", "Only changes of the last DURATION (e.g. 24h, 7d).").PlaceHolder("DURATION").String()
	format := cmd.Flag("format", "Output format: text or json (one change per line).").Default("text").Enum("text", "json")
	return cmd.FullCommand(), func(ctx context.Context, e *env) error {
		var from time.Time
		if *since != "" {
			d, err := model.ParseDuration(*since)
			if err != nil || d <= 0 {
				return usagef("--since %q: want a positive duration such as 24h or 7d", *since)
			}
			from = time.Now().Add(-time.Duration(d))
		}
		r, err := src.open(ctx, e)
		if err != nil {
			return err
		}
		defer r.Close()
		changes, err := r.Changes(*target, from, time.Time{})
		if err != nil {
			return err
		}
		if *format == "json" {
			return writeChangesJSON(e.stdout, changes)
		}
		if len(changes) == 0 {
			_, err := fmt.Fprintln(e.stdout, "no changes")
			return err
		}
		return writeChangesText(e.stdout, changes, true)
	}
}

func writeChangesJSON(w io.Writer, changes []snapshot.Change) error {
	enc := json.NewEncoder(w)
	for _, c := range changes {
		if err := enc.Encode(c); err != nil {
			return fmt.Errorf("write change: %w", err)
		}
	}
	return nil
}

// writeChangesText prints one aligned line per change.
func writeChangesText(w io.Writer, changes []snapshot.Change, withTarget bool) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	for _, c := range changes {
		where := c.Address
		if c.Port != 0 {
			if where == "" {
				where = "*" // a target-wide verdict (expected_missing)
			}
			if strings.Contains(where, ":") {
				where = "[" + where + "]"
			}
			where = fmt.Sprintf("%s:%d/%s", where, c.Port, c.Protocol)
		}
		var what string
		switch {
		case c.Before != nil && c.After != nil:
			what = describePort(c.Before) + " -> " + describePort(c.After)
		case c.After != nil:
			what = describePort(c.After)
		case c.Before != nil:
			// A closure: say what was there, not the state it left.
			if svc := describeService(c.Before.Service); svc != "" {
				what = "(was " + svc + ")"
			}
		}
		if c.Flaps > 0 {
			what += " (flapped " + counted(c.Flaps, "time", "times") + ")"
		}
		if c.Detail != "" {
			what += "  " + textsafe.Clean(c.Detail, 200)
		}
		line := c.At.UTC().Format(time.RFC3339) + "\t"
		if withTarget {
			line += textsafe.Clean(c.Target, 64) + "\t"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\n", line, c.Kind, where, strings.TrimSpace(what))
	}
	_ = tw.Flush() // into a buffer: cannot fail
	// A line whose last column is empty would end in padding.
	var out strings.Builder
	for line := range strings.Lines(buf.String()) {
		out.WriteString(strings.TrimRight(line, " \n") + "\n")
	}
	if _, err := io.WriteString(w, out.String()); err != nil {
		return fmt.Errorf("write changes: %w", err)
	}
	return nil
}

func describePort(p *snapshot.Port) string {
	s := p.State
	if svc := describeService(p.Service); svc != "" {
		s += " (" + svc + ")"
	}
	return s
}

// describeService is what ran on a port, with the start of its certificate
// fingerprint; "" when nothing is known.
func describeService(v *snapshot.Service) string {
	if v == nil {
		return ""
	}
	parts := nonEmpty(v.Describe())
	if v.Cert != nil && v.Cert.Fingerprint != "" {
		fp := v.Cert.Fingerprint
		if len(fp) > 16 {
			fp = fp[:16]
		}
		parts = append(parts, "cert "+fp)
	}
	return textsafe.Clean(strings.Join(parts, " "), 120)
}
