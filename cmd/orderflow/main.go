// Command orderflow runs the order service: `orderflow dev` starts
// everything in one process on embedded defaults; the other subcommands run
// one part each against external components, for production.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"go.temporal.io/sdk/contrib/envconfig"
)

// command is one subcommand.
type command struct {
	name, summary string
	run           func(ctx context.Context, cfg Config, logger *slog.Logger, args []string) error
	// args: it reads arguments of its own (and answers -h itself); the
	// others take none, their settings being environment variables.
	args bool
}

var commands = []command{
	{"dev", "start everything in one process: embedded Temporal (with Web UI), private PostgreSQL, embedded NATS JetStream, worker, outbox relay, API, and the promotions, analytics and inbound consumers (and the courier with ORDERFLOW_COURIER_DELAY)", runDev, false},
	{"api", "serve the HTTP API against external Temporal, PostgreSQL and NATS", runAPI, false},
	{"worker", "run the Temporal worker (workflows and activities) against external components", runWorker, false},
	{"relay", "publish the transactional outbox to NATS JetStream (one relay is active, others stand by): DATABASE_URL and NATS_URL", runRelay, false},
	{"promotions", "run the promotions context: a voucher for every completed order (consumes ORDER_EVENTS): DATABASE_URL and NATS_URL", runPromotions, false},
	{"analytics", "run the restaurant analytics projection (consumes ORDER_EVENTS): DATABASE_URL and NATS_URL", runAnalytics, false},
	{"inbound", "turn the delivery context's delivery.completed into the order workflows' delivered Update: DATABASE_URL, NATS_URL, Temporal", runInbound, false},
	{"courier", "run the simulated courier: delivery.completed ORDERFLOW_COURIER_DELAY after each acceptance: DATABASE_URL and NATS_URL", runCourier, false},
	{"events", "inspect and repair the event bus: events tail | replay | dlq list | dlq redrive | dlq skip (orderflow events help)", runEvents, true},
	{"bench", "measure orders/s and latency end to end on a fresh embedded stack, next to bare-Temporal baselines in the same run (orderflow bench -h)", runBench, true},
	{"migrate", "apply the database migrations to DATABASE_URL and exit (dev migrates its own database on start)", runMigrate, false},
}

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs one subcommand and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if isHelp(args[0]) {
		if len(args) == 1 || isHelp(args[1]) {
			usage(stdout)
			return 0
		}
		// `orderflow help api` is `orderflow api -h`, and `orderflow help
		// events tail` is `orderflow events tail -h`: a command that reads
		// arguments of its own answers its -h itself.
		for _, c := range commands {
			if c.name == args[1] {
				return Main(append(slices.Clone(args[1:]), "-h"), stdout, stderr)
			}
		}
		fmt.Fprintf(stderr, "orderflow help: unknown command %q\n\n", args[1])
		usage(stderr)
		return 2
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == args[0] {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "orderflow: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	if rest := args[1:]; !cmd.args && len(rest) > 0 {
		// Nothing runs on a -h: `orderflow migrate -h` against production
		// must not migrate it.
		if isHelp(rest[0]) {
			commandUsage(stdout, cmd)
			return 0
		}
		fmt.Fprintf(stderr, "orderflow %s: takes no arguments (got %q); it is configured by environment variables\n\n", cmd.name, rest[0])
		commandUsage(stderr, cmd)
		return 2
	}
	cfg, err := FromEnv(envconfig.EnvLookupOS)
	if err != nil {
		if !cmd.args {
			fmt.Fprintf(stderr, "orderflow: %v\n", &configError{err})
			return 2
		}
		// Its -h (orderflow events tail -h, say) is answered all the
		// same; it returns the mistake once it needs the configuration.
		cfg.invalid = &configError{err}
	}
	logger := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal starts a graceful shutdown, which may wait for
	// requests in flight; a second one kills the process, as users expect.
	go func() {
		<-ctx.Done()
		stop()
	}()
	err = cmd.run(ctx, cfg, logger, args[1:])
	var uerr *usageError
	var cerr *configError
	switch {
	case errors.As(err, &cerr):
		fmt.Fprintf(stderr, "orderflow: %v\n", cerr)
		return 2
	case errors.As(err, &uerr):
		if !uerr.printed {
			fmt.Fprintln(stderr, uerr.err)
		}
		if uerr.usage != "" {
			fmt.Fprint(stderr, "\n"+uerr.usage)
		}
		return 2
	case err != nil && !errors.Is(err, context.Canceled):
		logger.Error(cmd.name+" failed", "err", err)
		return 1
	}
	if ctx.Err() != nil {
		logger.Info(cmd.name + " stopped")
	}
	return 0
}

// usageError is a mistake in a command's arguments, for whoever typed it
// to fix: Main prints it as a plain line, not as a log line, followed by
// usage if set, and exits 2, the flag package's convention.
type usageError struct {
	// err says what was wrong, the command named first
	// ("orderflow events: ...").
	err error
	// printed is set when the flag set has printed err and its usage.
	printed bool
	usage   string
}

func (e *usageError) Error() string { return e.err.Error() }

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

func usage(w io.Writer) {
	fmt.Fprint(w, "orderflow runs food-delivery orders as durable Temporal workflows and publishes\ntheir domain events to NATS JetStream through a transactional outbox.\n\nUsage: orderflow <command>\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	envUsage(w, "")
}

// commandUsage is the help of a command that takes no arguments.
func commandUsage(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: orderflow %s\n\n%s.\n", c.name, c.summary)
	envUsage(w, c.name)
}

// envUsage lists the variables command uses, or every one for "".
func envUsage(w io.Writer, command string) {
	if command == "" {
		fmt.Fprint(w, "\nEnvironment (each read once at start):\n")
	} else {
		fmt.Fprintf(w, "\nEnvironment (each read once at start): those orderflow %s uses. It checks the others too, and stops on a malformed one; orderflow help lists them all.\n", command)
	}
	for _, v := range envVars {
		if command != "" && v.only != nil && !slices.Contains(v.only, command) {
			continue
		}
		def := v.def
		if def == "" {
			def = "unset"
		}
		fmt.Fprintf(w, "  %s\n      %s (default: %s)\n", v.name, v.help, def)
	}
}
