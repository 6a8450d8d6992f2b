package main

import (
	"context"

	"github.com/alecthomas/kingpin/v2"
)

// checkConfigCommand is completed by the config work; it refuses to run
// until then.
func checkConfigCommand(app *kingpin.Application) (string, runFunc) {
	cmd := app.Command("check-config", "Validate a configuration file; exit 0 if valid, 2 with the errors otherwise.")
	path := cmd.Arg("path", "Configuration file.").Required().String()
	return cmd.FullCommand(), func(_ context.Context, e *env) error {
		return usagef("%s: config validation not built yet", *path)
	}
}
