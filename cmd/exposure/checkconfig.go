package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/alecthomas/kingpin/v2"

	"github.com/exposure-monitor/exposure/config"
)

// checkConfigCommand validates a configuration file the way the daemon
// loads it: exit 0 with a summary, or every error on stderr and exit 2.
func checkConfigCommand(app *kingpin.Application) (string, runFunc) {
	cmd := app.Command("check-config", "Validate a configuration file; exit 0 if valid, 2 with the errors otherwise.")
	path := cmd.Arg("path", "Configuration file.").Required().String()
	return cmd.FullCommand(), func(_ context.Context, e *env) error {
		c, err := config.Load(*path)
		var errs config.Errors
		switch {
		case errors.As(err, &errs):
			for _, ce := range errs {
				fmt.Fprintln(e.stderr, ce)
			}
			return usagef("%s: invalid configuration: %d %s", *path, len(errs), plural(len(errs), "error", "errors"))
		case err != nil:
			return usagef("%w", err)
		}
		return summarize(e.stdout, c)
	}
}

// summarize prints what the daemon would scan: one line per target.
func summarize(w io.Writer, c *config.Config) error {
	fmt.Fprintf(w, "%s: valid: %d %s, %d %s\n", c.File(),
		len(c.Targets), plural(len(c.Targets), "target", "targets"),
		len(c.Receivers), plural(len(c.Receivers), "receiver", "receivers"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tADDRESSES\tPORTS\tSCHEDULE\tSERVICE DETECTION")
	for _, t := range c.Targets {
		addrs := fmt.Sprint(t.TargetSpec.StaticCount())
		if n := len(t.TargetSpec.Hostnames()); n > 0 {
			addrs += fmt.Sprintf(" (%d %s)", n, plural(n, "hostname", "hostnames"))
		}
		sv := "off"
		if t.ServiceDetection.Enabled {
			sv = fmt.Sprintf("intensity %d", t.ServiceDetection.Intensity)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d (%s)\t%s\t%s\n", t.Name, addrs, t.PortSpec.Len(), t.Ports, t.Schedule, sv)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	if s := c.Global.Shard; s.Total > 1 {
		_, err := fmt.Fprintf(w, "shard %d of %d scans %d of the %d targets\n", s.Index, s.Total, len(c.OwnedTargets()), len(c.Targets))
		return err
	}
	return nil
}
