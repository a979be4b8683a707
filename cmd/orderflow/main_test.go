package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/db/dbtest"
	"github.com/orderflow/orderflow/temporal"
)

// fakeEnv is an environment for FromEnv that holds only what a test sets.
type fakeEnv map[string]string

func (e fakeEnv) LookupEnv(name string) (string, bool) {
	v, ok := e[name]
	return v, ok
}

func (e fakeEnv) Environ() []string {
	var out []string
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

// newEnv returns vars plus a TEMPORAL_CONFIG_FILE that does not exist, so
// that a Temporal client config file in the user's home cannot leak in.
func newEnv(t *testing.T, vars map[string]string) fakeEnv {
	t.Helper()
	env := fakeEnv{"TEMPORAL_CONFIG_FILE": filepath.Join(t.TempDir(), "absent.toml")}
	for k, v := range vars {
		env[k] = v
	}
	return env
}

func TestHelpListsEveryCommandAndVariable(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "help"} {
		t.Run(arg, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main([]string{arg}, &stdout, &stderr); code != 0 {
				t.Fatalf("orderflow %s exit code = %d; want 0; stderr: %s", arg, code, stderr.String())
			}
			out := stdout.String()
			for _, c := range commands {
				if !strings.Contains(out, "  "+c.name+" ") || !strings.Contains(out, c.summary) {
					t.Errorf("orderflow %s does not list command %q with its summary:\n%s", arg, c.name, out)
				}
			}
			for _, v := range envVars {
				if !strings.Contains(out, v.name) || !strings.Contains(out, v.help) {
					t.Errorf("orderflow %s does not list %s with its help:\n%s", arg, v.name, out)
				}
				if v.def != "" && !strings.Contains(out, "(default: "+v.def+")") {
					t.Errorf("orderflow %s does not give %s's default %q", arg, v.name, v.def)
				}
			}
		})
	}
}

// TestCommandHelpListsTheVariablesItUses: a command's -h lists the
// variables it uses, not those of the embedded stack it does not start
// (orderflow api -h listed ORDERFLOW_PG_ADDR).
func TestCommandHelpListsTheVariablesItUses(t *testing.T) {
	for _, v := range envVars {
		for _, name := range v.only {
			if !slices.ContainsFunc(commands, func(c command) bool { return c.name == name }) {
				t.Errorf("%s: only names %q, which is no command", v.name, name)
			}
		}
	}
	uses := map[string][]string{ // some of each command's, and some it must not list
		"dev":        {"ORDERFLOW_DATA_DIR", "ORDERFLOW_PG_ADDR", "DATABASE_URL", "NATS_URL", "TEMPORAL_ADDRESS", "ORDERFLOW_RELAY_BATCH"},
		"api":        {"ORDERFLOW_HTTP_ADDR", "DATABASE_URL", "NATS_URL", "TEMPORAL_ADDRESS", "ORDERFLOW_TEMPORAL_ADDR", "ORDERFLOW_ACCEPT_TIMEOUT", "-ORDERFLOW_PG_ADDR", "-ORDERFLOW_DATA_DIR", "-ORDERFLOW_RELAY_BATCH"},
		"worker":     {"ORDERFLOW_TASK_QUEUE", "DATABASE_URL", "TEMPORAL_ADDRESS", "-NATS_URL", "-ORDERFLOW_HTTP_ADDR"},
		"relay":      {"DATABASE_URL", "NATS_URL", "ORDERFLOW_NATS_SYNC", "ORDERFLOW_RELAY_BATCH", "ORDERFLOW_STREAM_MAX_AGE", "-TEMPORAL_ADDRESS", "-ORDERFLOW_NATS_ADDR"},
		"courier":    {"ORDERFLOW_COURIER_DELAY", "NATS_URL", "-TEMPORAL_ADDRESS"},
		"inbound":    {"DATABASE_URL", "NATS_URL", "TEMPORAL_ADDRESS", "ORDERFLOW_TEMPORAL_ADDR", "-ORDERFLOW_TASK_QUEUE", "-ORDERFLOW_RELAY_BATCH"},
		"promotions": {"DATABASE_URL", "NATS_URL", "-TEMPORAL_ADDRESS", "-ORDERFLOW_HTTP_ADDR"},
		"analytics":  {"DATABASE_URL", "NATS_URL", "-TEMPORAL_ADDRESS", "-ORDERFLOW_STREAM_MAX_AGE"},
		"migrate":    {"DATABASE_URL", "ORDERFLOW_LOG_LEVEL", "-NATS_URL", "-TEMPORAL_ADDRESS", "-ORDERFLOW_TEMPORAL_PERSISTENCE"},
	}
	for _, c := range commands {
		if c.args {
			continue
		}
		var stdout, stderr bytes.Buffer
		if code := Main([]string{c.name, "-h"}, &stdout, &stderr); code != 0 {
			t.Fatalf("orderflow %s -h exit code = %d; stderr %s", c.name, code, stderr.String())
		}
		if !strings.Contains(stdout.String(), "stops on a malformed one; orderflow help lists them all") {
			t.Errorf("orderflow %s -h does not say that it checks the variables it does not list, nor where they are:\n%s", c.name, stdout.String())
		}
		listed := map[string]bool{}
		for _, line := range strings.Split(stdout.String(), "\n") {
			if name, ok := strings.CutPrefix(line, "  "); ok && !strings.HasPrefix(name, " ") {
				listed[name] = true
			}
		}
		for _, v := range envVars {
			if want := v.only == nil || slices.Contains(v.only, c.name); listed[v.name] != want {
				t.Errorf("orderflow %s -h lists %s: %v; want %v", c.name, v.name, listed[v.name], want)
			}
		}
		for _, name := range uses[c.name] {
			name, not := strings.CutPrefix(name, "-")
			if listed[name] == not {
				t.Errorf("orderflow %s -h lists %s: %v; want %v:\n%s", c.name, name, listed[name], !not, stdout.String())
			}
		}
	}
}

// TestHelpOfTheURLsNamesTheCommandsThatDoNotRefuse: unset, DATABASE_URL,
// NATS_URL and TEMPORAL_ADDRESS do not make every command but dev refuse
// to start or dial ORDERFLOW_TEMPORAL_ADDR: bench starts its own embedded
// stack (devStackConfig, on free ports), and events dials
// nats://ORDERFLOW_NATS_ADDR, dev's server. orderflow help must not say
// otherwise.
func TestHelpOfTheURLsNamesTheCommandsThatDoNotRefuse(t *testing.T) {
	help := map[string]string{}
	for _, v := range envVars {
		help[v.name] = v.help
	}
	for _, tt := range []struct{ name, want string }{
		{"DATABASE_URL", "orderflow bench"},
		{"NATS_URL", "orderflow bench"},
		{"NATS_URL", "orderflow events"},
		{"ORDERFLOW_NATS_ADDR", "orderflow events"},
		{"TEMPORAL_ADDRESS", "orderflow bench"},
	} {
		if !strings.Contains(help[tt.name], tt.want) {
			t.Errorf("help of %s = %q; want it to say what %s does when it is unset", tt.name, help[tt.name], tt.want)
		}
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{name: "no command", args: nil},
		{name: "unknown command", args: []string{"frobnicate"}, wantStderr: `unknown command "frobnicate"`},
		{name: "help for an unknown command", args: []string{"help", "frobnicate"}, wantStderr: `orderflow help: unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main(tt.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit code = %d; want 2", code)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantStderr)
			}
			if !strings.Contains(stderr.String(), "Usage: orderflow <command>") || stdout.Len() > 0 {
				t.Errorf("want the usage on stderr and nothing on stdout; stdout %q, stderr %q", stdout.String(), stderr.String())
			}
		})
	}
}

// TestCommandHelpRunsNothing: every command that takes no arguments
// answers -h with its usage and exit 0, and any other argument with exit
// 2, before it reads its configuration or touches anything: `orderflow
// migrate -h` against a production DATABASE_URL must not migrate it. An
// unreachable DATABASE_URL makes a command that did run fail otherwise.
func TestCommandHelpRunsNothing(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	t.Setenv("ORDERFLOW_LOG_LEVEL", "loud") // a command that read its configuration would exit 2 for it
	t.Chdir(t.TempDir())                    // dev would create its data dir here
	for _, c := range commands {
		if c.args {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main([]string{c.name, "-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "Usage: orderflow "+c.name) {
				t.Errorf("orderflow %s -h = exit %d, stdout %q, stderr %q; want 0 and its usage", c.name, code, stdout.String(), stderr.String())
			}
			stdout.Reset()
			stderr.Reset()
			if code := Main([]string{c.name, "--bogus"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "takes no arguments") || strings.Contains(stderr.String(), "configuration:") {
				t.Errorf("orderflow %s --bogus = exit %d, stderr %q; want 2 and that it takes no arguments", c.name, code, stderr.String())
			}
		})
	}
	if entries, err := os.ReadDir("."); err != nil || len(entries) > 0 {
		t.Errorf("the commands left %v (%v) in the working directory; want nothing", entries, err)
	}
}

// TestHelpCommand: `orderflow help X` answers what `orderflow X -h` does,
// for the commands without arguments and for those that parse their own
// (it printed the general usage). Nothing runs: DATABASE_URL is
// unreachable, as in TestCommandHelpRunsNothing.
func TestHelpCommand(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			var helpOut, helpErr, flagOut, flagErr bytes.Buffer
			helpCode := Main([]string{"help", c.name}, &helpOut, &helpErr)
			flagCode := Main([]string{c.name, "-h"}, &flagOut, &flagErr)
			if helpCode != flagCode || helpOut.String() != flagOut.String() || helpErr.String() != flagErr.String() {
				t.Errorf("orderflow help %s = exit %d, stdout %q, stderr %q; want what orderflow %s -h gives: exit %d, stdout %q, stderr %q",
					c.name, helpCode, helpOut.String(), helpErr.String(), c.name, flagCode, flagOut.String(), flagErr.String())
			}
			if strings.Contains(helpOut.String()+helpErr.String(), "Usage: orderflow <command>") {
				t.Errorf("orderflow help %s printed the general usage", c.name)
			}
		})
	}
	// A subcommand's own help, through help. Its flag set prints to the
	// process's stderr.
	var helpCode, flagCode int
	helpOut := osStderr(t, func() { helpCode = Main([]string{"help", "events", "tail"}, io.Discard, io.Discard) })
	flagOut := osStderr(t, func() { flagCode = Main([]string{"events", "tail", "-h"}, io.Discard, io.Discard) })
	if helpCode != 0 || flagCode != 0 || helpOut != flagOut || !strings.Contains(helpOut, "Usage of orderflow events tail") {
		t.Errorf("orderflow help events tail = exit %d, %q; want what orderflow events tail -h gives: exit %d, %q", helpCode, helpOut, flagCode, flagOut)
	}
}

// osStderr returns what fn wrote to os.Stderr.
func osStderr(t *testing.T, fn func()) string {
	t.Helper()
	return osFile(t, &os.Stderr, fn)
}

// osFile returns what fn wrote to *f, os.Stdout or os.Stderr.
func osFile(t *testing.T, f **os.File, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := *f
	*f = w
	defer func() { *f = saved }()
	read := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		read <- string(b)
	}()
	fn()
	w.Close()
	return <-read
}

func TestInvalidConfigurationExits2NamingTheVariable(t *testing.T) {
	t.Setenv("ORDERFLOW_LOG_LEVEL", "loud")
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"migrate"}, &stdout, &stderr); code != 2 {
		t.Errorf("exit code = %d; want 2", code)
	}
	if !strings.Contains(stderr.String(), "ORDERFLOW_LOG_LEVEL") {
		t.Errorf("stderr %q does not name ORDERFLOW_LOG_LEVEL", stderr.String())
	}
}

// TestCommandsWithArgumentsAnswerHelpDespiteABadConfiguration: events and
// bench read arguments of their own; a malformed variable did not let
// them answer -h (exit 2 with the configuration error), where the other
// commands do. Once they need the configuration, the mistake is the same
// plain line with exit 2 as for the others, and nothing runs.
func TestCommandsWithArgumentsAnswerHelpDespiteABadConfiguration(t *testing.T) {
	t.Setenv("ORDERFLOW_LOG_LEVEL", "loud")
	t.Setenv("NATS_URL", "nats://127.0.0.1:1") // events would fail to connect otherwise: exit 1
	t.Chdir(t.TempDir())                       // bench would make bench/results here
	for _, args := range [][]string{{"events", "-h"}, {"help", "events"}, {"events", "dlq", "-h"}, {"events", "tail", "-h"}, {"bench", "-h"}} {
		var stdout, stderr bytes.Buffer
		var code int
		// events prints its usage to the process's stdout, a subcommand's
		// flag set and bench's to its stderr.
		var flagOut string
		cmdOut := osFile(t, &os.Stdout, func() { flagOut = osStderr(t, func() { code = Main(args, &stdout, &stderr) }) })
		if out := stdout.String() + cmdOut + flagOut; code != 0 || !strings.Contains(out, "Usage") || strings.Contains(out+stderr.String(), "configuration") {
			t.Errorf("orderflow %v with a bad ORDERFLOW_LOG_LEVEL = exit %d, output %q, stderr %q; want 0 and the usage", args, code, out, stderr.String())
		}
	}
	for _, args := range [][]string{{"events", "dlq", "list"}, {"events", "tail"}, {"bench", "-n", "5"}} {
		var stdout, stderr bytes.Buffer
		if code := Main(args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "orderflow: configuration: ORDERFLOW_LOG_LEVEL") {
			t.Errorf("orderflow %v with a bad ORDERFLOW_LOG_LEVEL = exit %d, stderr %q; want 2 and the line naming it", args, code, stderr.String())
		}
	}
	if entries, err := os.ReadDir("."); err != nil || len(entries) > 0 {
		t.Errorf("the commands left %v (%v) in the working directory; want nothing", entries, err)
	}
}

func TestFromEnvDefaults(t *testing.T) {
	cfg, err := FromEnv(newEnv(t, nil))
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"DataDir", cfg.DataDir, ".orderflow"},
		{"HTTPAddr", cfg.HTTPAddr, "127.0.0.1:8080"},
		{"LogLevel", cfg.LogLevel, slog.LevelInfo},
		{"LogJSON", cfg.LogJSON, false},
		{"TaskQueue", cfg.TaskQueue, temporal.DefaultTaskQueue},
		{"TemporalExternal", cfg.TemporalExternal, false},
		{"TemporalAddr", cfg.TemporalAddr, "127.0.0.1:7233"},
		{"Temporal.HostPort", cfg.Temporal.HostPort, "127.0.0.1:7233"},
		{"Temporal.Namespace", cfg.Temporal.Namespace, "default"},
		{"UIAddr", cfg.UIAddr, "127.0.0.1:8233"},
		{"DatabaseURL", cfg.DatabaseURL, ""},
		{"PGAddr", cfg.PGAddr, "127.0.0.1:15432"},
		{"NATSURL", cfg.NATSURL, ""},
		{"NATSAddr", cfg.NATSAddr, "127.0.0.1:4222"},
		{"DevWorker", cfg.DevWorker, true},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestFromEnvExternalComponents(t *testing.T) {
	cfg, err := FromEnv(newEnv(t, map[string]string{
		"TEMPORAL_ADDRESS":     "temporal.example.com:7233",
		"TEMPORAL_NAMESPACE":   "orders",
		"DATABASE_URL":         "postgres://db.example.com/orderflow",
		"NATS_URL":             "nats://nats.example.com:4222",
		"ORDERFLOW_DATA_DIR":   "/var/lib/orderflow",
		"ORDERFLOW_HTTP_ADDR":  ":9090",
		"ORDERFLOW_UI_ADDR":    "off",
		"ORDERFLOW_LOG_LEVEL":  "debug",
		"ORDERFLOW_LOG_FORMAT": "json",
		"ORDERFLOW_DEV_WORKER": "off",
	}))
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"TemporalExternal", cfg.TemporalExternal, true},
		{"Temporal.HostPort", cfg.Temporal.HostPort, "temporal.example.com:7233"},
		{"Temporal.Namespace", cfg.Temporal.Namespace, "orders"},
		{"DatabaseURL", cfg.DatabaseURL, "postgres://db.example.com/orderflow"},
		{"NATSURL", cfg.NATSURL, "nats://nats.example.com:4222"},
		{"DataDir", cfg.DataDir, "/var/lib/orderflow"},
		{"HTTPAddr", cfg.HTTPAddr, ":9090"},
		{"UIAddr", cfg.UIAddr, ""},
		{"LogLevel", cfg.LogLevel, slog.LevelDebug},
		{"LogJSON", cfg.LogJSON, true},
		{"DevWorker", cfg.DevWorker, false},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestFromEnvRejectsInvalidValues(t *testing.T) {
	tests := []struct {
		name, value string
	}{
		{"ORDERFLOW_LOG_LEVEL", "loud"},
		{"ORDERFLOW_LOG_FORMAT", "xml"},
		{"ORDERFLOW_DEV_WORKER", "no"},
		{"ORDERFLOW_RELAY_BATCH", "0"},
		// Beyond the int4 of the claim's LIMIT: 2^32 wrapped to 0, a
		// relay that claimed nothing.
		{"ORDERFLOW_RELAY_BATCH", "4294967296"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromEnv(newEnv(t, map[string]string{tt.name: tt.value}))
			if err == nil {
				t.Fatalf("FromEnv with %s=%s: no error", tt.name, tt.value)
			}
			if !strings.Contains(err.Error(), tt.name) {
				t.Errorf("error %q does not name %s", err, tt.name)
			}
		})
	}
}

// TestFromEnvEnumsIgnoreCase: off and json are taken in any case, as the
// other enumerated settings are, and a log level not known says which
// ones are.
func TestFromEnvEnumsIgnoreCase(t *testing.T) {
	cfg, err := FromEnv(newEnv(t, map[string]string{"ORDERFLOW_UI_ADDR": "OFF", "ORDERFLOW_LOG_FORMAT": "JSON"}))
	if err != nil || cfg.UIAddr != "" || !cfg.LogJSON {
		t.Errorf("OFF and JSON = %v, UI address %q, JSON logs %v; want no UI, JSON logs", err, cfg.UIAddr, cfg.LogJSON)
	}
	if _, err := FromEnv(newEnv(t, map[string]string{"ORDERFLOW_LOG_LEVEL": "loud"})); err == nil || !strings.Contains(err.Error(), "debug, info, warn or error") {
		t.Errorf("ORDERFLOW_LOG_LEVEL=loud: %v; want the accepted values named", err)
	}
}

// TestCommandsRefuseAnUnmigratedDatabase: the commands that run against a
// DATABASE_URL someone else migrates refuse to start on a database that
// lacks migrations, saying to run `orderflow migrate`. They started, and
// `orderflow api` reported ready and answered every read with a 500. NATS
// and Temporal are left unset: the check comes first. After `orderflow
// migrate` the same command gets past it (and stops at NATS_URL).
func TestCommandsRefuseAnUnmigratedDatabase(t *testing.T) {
	// A new, empty database next to the one dbtest gives, as a production
	// database is before its first migrate.
	store := dbtest.New(t)
	empty := fmt.Sprintf("empty_%d", os.Getpid())
	if _, err := store.DB.Exec("CREATE DATABASE " + empty); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = store.DB.Exec("DROP DATABASE IF EXISTS " + empty + " WITH (FORCE)") })
	u, err := url.Parse(dbtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + empty
	t.Setenv("DATABASE_URL", u.String())
	t.Setenv("NATS_URL", "") // the last step stops at it
	t.Setenv("ORDERFLOW_COURIER_DELAY", "30s")
	for _, command := range []string{"api", "worker", "relay", "promotions", "analytics", "inbound", "courier"} {
		var stdout, stderr bytes.Buffer
		if code := Main([]string{command}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "run `orderflow migrate`") {
			t.Errorf("orderflow %s on an unmigrated database = exit %d, stderr %q; want 1 and to run orderflow migrate", command, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"migrate"}, &stdout, &stderr); code != 0 {
		t.Fatalf("orderflow migrate = exit %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	if code := Main([]string{"api"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "NATS_URL is not set") {
		t.Errorf("orderflow api after migrate = exit %d, stderr %q; want it past the schema check, at NATS_URL", code, stderr.String())
	}
}
