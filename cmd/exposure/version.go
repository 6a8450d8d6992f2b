package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/alecthomas/kingpin/v2"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func versionCommand(app *kingpin.Application) (string, runFunc) {
	cmd := app.Command("version", "Print the version and build information.")
	return cmd.FullCommand(), func(_ context.Context, e *env) error {
		rev := "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					rev = s.Value
				}
			}
		}
		_, err := fmt.Fprintf(e.stdout, "exposure %s (revision %s, %s, %s/%s)\n",
			version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return err
	}
}
