// Command exposure is a continuous exposure monitor: it scans targets on a
// schedule, stores snapshots, diffs them and alerts on changes.
//
// main only parses flags, builds the logger, turns signals into a context
// and calls into the packages; each subcommand lives in its own file.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
)

// runFunc is the action of one subcommand.
type runFunc func(ctx context.Context, env *env) error

// env is what every subcommand receives from main.
type env struct {
	logger *slog.Logger
	stdout io.Writer
	stderr io.Writer
}

// usageError marks errors in arguments or configuration: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// registrars add one subcommand each to the application.
var registrars = []func(app *kingpin.Application) (string, runFunc){
	versionCommand,
	checkConfigCommand,
	scanCommand,
	daemonCommand,
	historyCommand,
	diffCommand,
	showCommand,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("exposure", "Continuous exposure monitor: scheduled SYN and service scans, snapshots, diffs, metrics and alerts.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	// kingpin calls terminate after --help and --version; remember the code
	// instead of exiting, so run stays testable, and stop there.
	terminated := -1
	app.Terminate(func(code int) {
		if terminated < 0 {
			terminated = code
		}
	})
	logLevel := app.Flag("log.level", "Log level: debug, info, warn, error.").Default("info").Enum("debug", "info", "warn", "error")
	logFormat := app.Flag("log.format", "Log format: logfmt or json.").Default("logfmt").Enum("logfmt", "json")

	actions := map[string]runFunc{}
	for _, reg := range registrars {
		name, fn := reg(app)
		actions[name] = fn
	}
	cmd, err := app.Parse(args)
	if terminated >= 0 {
		return terminated
	}
	if err != nil {
		fmt.Fprintf(stderr, "exposure: %v\n", err)
		return 2
	}

	var level slog.Level
	_ = level.UnmarshalText([]byte(*logLevel))
	opts := &slog.HandlerOptions{Level: level}
	var handler slog.Handler = slog.NewTextHandler(stderr, opts)
	if *logFormat == "json" {
		handler = slog.NewJSONHandler(stderr, opts)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{logger: slog.New(handler), stdout: stdout, stderr: stderr}
	if err := actions[cmd](ctx, e); err != nil {
		fmt.Fprintf(stderr, "exposure %s: %v\n", cmd, err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}
