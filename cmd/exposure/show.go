package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"

	"github.com/exposure-monitor/exposure/snapshot"
)

func showCommand(app *kingpin.Application) (string, runFunc) {
	cmd := app.Command("show", "Print a target's exposure now (its last complete scan) or at a past moment.")
	src := sourceFlags(cmd)
	target := cmd.Flag("target", "Target name.").Required().String()
	at := cmd.Flag("at", "A past moment: RFC 3339 time (2026-11-25T06:00:00Z) or a duration ago (36h, 7d).").PlaceHolder("TIME").String()
	format := cmd.Flag("format", "Output format: text, json (the snapshot document) or xml (nmap XML, for ndiff and nmap.xsl).").Default("text").Enum("text", "json", "xml")
	scripts := cmd.Flag("xml.scripts", "With --format xml: add the certificate (ssl-cert script) and inconclusive detections (exposure-detection script).").Bool()
	return cmd.FullCommand(), func(ctx context.Context, e *env) error {
		var when time.Time
		if *at != "" {
			var err error
			if when, err = parseMoment(*at, time.Now()); err != nil {
				return err
			}
		}
		r, err := src.open(ctx, e)
		if err != nil {
			return err
		}
		defer r.Close()
		var sn *snapshot.Snapshot
		if when.IsZero() {
			sn, err = r.LatestComplete(*target)
		} else {
			sn, err = r.At(*target, when)
		}
		if err != nil {
			return err
		}
		if *format == "xml" {
			xo := xmlOptions(e.args, "", nil)
			xo.Scripts = *scripts
			return writeXML(e.stdout, sn, xo)
		}
		if *format == "json" {
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(sn)
		}
		fmt.Fprintf(e.stdout, "Target %s as of scan %s (%s)\n\n", sn.Target, sn.ID, sn.StartedAt.UTC().Format(time.RFC3339))
		return writeScanText(e.stdout, sn, snapshotHosts(sn), true)
	}
}

func parseMoment(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := model.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-time.Duration(d)), nil
	}
	return time.Time{}, usagef("--at %q: want an RFC 3339 time or a duration ago such as 36h", s)
}
