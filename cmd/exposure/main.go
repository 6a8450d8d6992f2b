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
	// args is the command line after the program name.
	args   []string
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
	importCommand,
}

// logFlags are the global flags that shape the logger.
type logFlags struct{ level, format *string }

// newApp builds the command line: the global flags, --version and every
// subcommand with its action.
func newApp() (*kingpin.Application, map[string]runFunc, logFlags) {
	app := kingpin.New("exposure", "Continuous exposure monitor: scheduled SYN and service scans, snapshots, diffs, metrics and alerts.")
	app.Version(versionText())
	lf := logFlags{
		level:  app.Flag("log.level", "Log level: debug, info, warn, error.").Default("info").Enum("debug", "info", "warn", "error"),
		format: app.Flag("log.format", "Log format: logfmt or json.").Default("logfmt").Enum("logfmt", "json"),
	}
	actions := map[string]runFunc{}
	for _, reg := range registrars {
		name, fn := reg(app)
		actions[name] = fn
	}
	return app, actions, lf
}

// terminated is what parse's Terminate panics with: kingpin would exit
// after --help and --version, and would go on parsing if terminate
// returned.
type terminated struct{ code int }

// parse runs kingpin's parser; code is the exit code when it ended the
// program (--help, --version), else -1.
func parse(app *kingpin.Application, args []string) (cmd string, code int, err error) {
	app.Terminate(func(code int) { panic(terminated{code}) })
	defer func() {
		if r := recover(); r != nil {
			t, ok := r.(terminated)
			if !ok {
				panic(r)
			}
			cmd, code, err = "", t.code, nil
		}
	}()
	cmd, err = app.Parse(args)
	return cmd, -1, err
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	app, actions, lf := newApp()
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	args, notes, err := preparse(app, args)
	if err != nil {
		fmt.Fprintf(stderr, "exposure: %v\n", err)
		return 2
	}
	for _, n := range notes {
		fmt.Fprintf(stderr, "exposure: note: %s\n", n)
	}
	cmd, terminated, err := parse(app, args)
	if terminated >= 0 {
		return terminated
	}
	if err != nil {
		fmt.Fprintf(stderr, "exposure: %v\n", err)
		return 2
	}

	var level slog.Level
	_ = level.UnmarshalText([]byte(*lf.level))
	opts := &slog.HandlerOptions{Level: level}
	var handler slog.Handler = slog.NewTextHandler(stderr, opts)
	if *lf.format == "json" {
		handler = slog.NewJSONHandler(stderr, opts)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{logger: slog.New(handler), args: args, stdout: stdout, stderr: stderr}
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
