package main

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"
)

// The build information lives in prometheus/common's version package, set
// at link time as the Prometheus exporters do (make build):
//
//	-ldflags "-X github.com/prometheus/common/version.Version=v1.2.3
//	          -X github.com/prometheus/common/version.Revision=<commit> ...Branch ...BuildUser ...BuildDate"
//
// `exposure version`, `exposure --version` and exposure_build_info all read it.

// versionText is what `exposure version` and `exposure --version` print.
func versionText() string {
	if version.Version == "" {
		// Not stamped: the module version of `go install ...@v1.2.3`, else dev.
		version.Version = "dev"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version.Version = bi.Main.Version
		}
	}
	return version.Print("exposure")
}

func versionCommand(app *kingpin.Application) (string, runFunc) {
	cmd := app.Command("version", "Print the version and build information (the same as --version).")
	return cmd.FullCommand(), func(_ context.Context, e *env) error {
		_, err := fmt.Fprintln(e.stdout, versionText())
		return err
	}
}
