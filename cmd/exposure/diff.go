package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/exposure-monitor/exposure/diff"
	"github.com/exposure-monitor/exposure/snapshot"
)

func diffCommand(app *kingpin.Application) (string, runFunc) {
	cmd := app.Command("diff", "Print the changes between two stored scans of a target (default: the last two complete ones).")
	src := sourceFlags(cmd)
	target := cmd.Flag("target", "Target name.").Required().String()
	format := cmd.Flag("format", "Output format: text, json (one change per line) or xml (both scans as nmap XML, for ndiff).").Default("text").Enum("text", "json", "xml")
	outFrom := cmd.Flag("output.from", "With --format xml: write the older scan's nmap XML to FILE.").PlaceHolder("FILE").String()
	outTo := cmd.Flag("output.to", "With --format xml: write the newer scan's nmap XML to FILE.").PlaceHolder("FILE").String()
	fromID := cmd.Arg("from", "Older scan id (target/nanos, or just nanos); default: the second-last complete scan.").String()
	toID := cmd.Arg("to", "Newer scan id; default: the last complete scan.").String()
	return cmd.FullCommand(), func(ctx context.Context, e *env) error {
		r, err := src.open(ctx, e)
		if err != nil {
			return err
		}
		defer r.Close()
		from, to, err := pickScans(r, *target, *fromID, *toID)
		if err != nil {
			return err
		}
		if *format == "xml" {
			// ndiff compares two files: write one per scan.
			if *outFrom == "" || *outTo == "" {
				return usagef("--format xml writes two nmap XML files: give --output.from FILE and --output.to FILE")
			}
			xo := xmlOptions(e.args, "", nil)
			if err := writeXMLFile(*outFrom, from, xo); err != nil {
				return err
			}
			if err := writeXMLFile(*outTo, to, xo); err != nil {
				return err
			}
			_, err := fmt.Fprintf(e.stdout, "%s -> %s; compare with: ndiff %s %s\n", from.ID, to.ID, *outFrom, *outTo)
			return err
		}
		changes := diff.Compare(from, to, diff.Policy{})
		if *format == "json" {
			return writeChangesJSON(e.stdout, changes)
		}
		fmt.Fprintf(e.stdout, "%s (%s) -> %s (%s): %s\n", from.ID, from.StartedAt.UTC().Format(time.RFC3339),
			to.ID, to.StartedAt.UTC().Format(time.RFC3339), counted(len(changes), "change", "changes"))
		if !to.Complete {
			fmt.Fprintln(e.stdout, "note: the newer scan is incomplete; closures and hosts going down are not reported")
		}
		return writeChangesText(e.stdout, changes, false)
	}
}

func pickScans(s reader, target, fromID, toID string) (from, to *snapshot.Snapshot, err error) {
	load := func(id string) (*snapshot.Snapshot, error) {
		if !strings.Contains(id, "/") {
			id = target + "/" + id
		}
		sn, err := s.Snapshot(id)
		if err != nil {
			return nil, err
		}
		if sn.Target != target {
			return nil, usagef("scan %s belongs to target %s, not %s", id, sn.Target, target)
		}
		return sn, nil
	}
	if fromID != "" {
		if from, err = load(fromID); err != nil {
			return nil, nil, err
		}
		if toID != "" {
			to, err = load(toID)
		} else {
			to, err = s.LatestComplete(target)
		}
		if err != nil {
			return nil, nil, err
		}
		return from, to, nil
	}
	scans, err := s.Scans(target, 0)
	if err != nil {
		return nil, nil, err
	}
	var ids []string
	for _, sc := range scans {
		if sc.Complete {
			ids = append(ids, sc.ID)
			if len(ids) == 2 {
				break
			}
		}
	}
	if len(ids) < 2 {
		return nil, nil, fmt.Errorf("target %q has %s; a diff needs two", target, counted(len(ids), "complete scan", "complete scans"))
	}
	if from, err = s.Snapshot(ids[1]); err != nil {
		return nil, nil, err
	}
	if to, err = s.Snapshot(ids[0]); err != nil {
		return nil, nil, err
	}
	return from, to, nil
}
