package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"

	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/natsdev"
	"github.com/orderflow/orderflow/events/relay"
	"github.com/orderflow/orderflow/temporal"
	"github.com/orderflow/orderflow/temporal/devserver"
)

// envVar documents one environment variable; --help prints the table.
type envVar struct {
	name, def, help string
	// only lists the commands that use the variable, when not all do: a
	// command's -h lists just the variables it uses.
	only []string
}

// The commands that use a group of variables.
var (
	embedded     = []string{"dev"}
	temporalCmds = []string{"dev", "api", "worker", "inbound"}
	natsCmds     = []string{"dev", "api", "relay", "promotions", "analytics", "inbound", "courier"}
	relayCmds    = []string{"dev", "relay"}
	apiCmds      = []string{"dev", "api"}
)

var envVars = []envVar{
	{"ORDERFLOW_DATA_DIR", ".orderflow", "where the embedded components keep their data", embedded},
	{"ORDERFLOW_HTTP_ADDR", "127.0.0.1:8080", "HTTP API listen address", apiCmds},
	{"ORDERFLOW_LOG_LEVEL", "info", "debug, info, warn or error", nil},
	{"ORDERFLOW_LOG_FORMAT", "text", "text or json", nil},
	{"ORDERFLOW_TASK_QUEUE", temporal.DefaultTaskQueue, "Temporal task queue of the order worker", []string{"dev", "api", "worker"}},
	{"ORDERFLOW_ACCEPT_TIMEOUT", "", "overrides every restaurant's accept timeout (a Go duration, e.g. 30s), for demos and tests; unset: per restaurant (10m)", apiCmds},
	{"ORDERFLOW_DELIVERY_SLA", "45m", "time from acceptance to delivery before an order is escalated", apiCmds},
	{"TEMPORAL_ADDRESS", "", "external Temporal frontend (host:port); unset: orderflow dev (and orderflow bench) starts an embedded server, and api, worker and inbound dial ORDERFLOW_TEMPORAL_ADDR", temporalCmds},
	{"TEMPORAL_NAMESPACE", "default", "Temporal namespace", temporalCmds},
	{"TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE", "", "Temporal Cloud / TLS settings, as every Temporal SDK reads them", temporalCmds},
	{"ORDERFLOW_TEMPORAL_ADDR", "127.0.0.1:7233", "embedded Temporal frontend listen address (what api, worker and inbound dial when TEMPORAL_ADDRESS is unset)", temporalCmds},
	{"ORDERFLOW_UI_ADDR", "127.0.0.1:8233", "embedded Temporal Web UI listen address (\"off\" disables it)", embedded},
	{"ORDERFLOW_TEMPORAL_PERSISTENCE", string(devserver.DefaultPersistence), "where the embedded Temporal server keeps workflows and histories. " +
		"postgres: databases temporal and temporal_visibility on the stack's PostgreSQL (the private one, or DATABASE_URL's server, whose role then needs CREATEDB unless they exist), " +
		"schema created and upgraded on start; with fsync and synchronous_commit on, as the private one runs, nothing acknowledged is lost, not even on power loss. " +
		"sqlite: the file temporal/temporal.db in the data dir, durable as the two settings below say. " +
		"Unset, a data dir that already holds temporal/temporal.db keeps using it", embedded},
	{"ORDERFLOW_TEMPORAL_SQLITE_JOURNAL", devserver.DefaultSQLiteJournal, "journal mode of the SQLite file: wal or delete (SQLite's own default, slower)", embedded},
	{"ORDERFLOW_TEMPORAL_SQLITE_SYNC", devserver.DefaultSQLiteSync, "synchronous setting of the SQLite file. full: nothing acknowledged is lost. " +
		"normal: faster, but an OS crash or power loss (not a crash of orderflow) loses the last commits; with journal delete it may even corrupt the file", embedded},
	{"ORDERFLOW_TEMPORAL_SHARDS", strconv.Itoa(devserver.DefaultHistoryShards), "history shards of a new embedded Temporal store; " +
		"an existing store keeps the count it was created with, and asking for another one fails", embedded},
	{"DATABASE_URL", "", "external PostgreSQL (postgres://...); unset: orderflow dev (and orderflow bench) starts a private cluster from the machine's binaries, and the other commands that use it refuse to start", []string{"dev", "api", "worker", "relay", "promotions", "analytics", "inbound", "courier", "migrate"}},
	{"ORDERFLOW_PG_ADDR", "127.0.0.1:15432", "private PostgreSQL listen address", embedded},
	{"NATS_URL", "", "external NATS with JetStream (nats://...); unset: orderflow dev (and orderflow bench) starts an embedded server, orderflow events dials dev's at ORDERFLOW_NATS_ADDR, and the other commands refuse to start", natsCmds},
	{"ORDERFLOW_NATS_ADDR", "127.0.0.1:4222", "embedded NATS listen address (and where orderflow events dials it when NATS_URL is unset)", embedded},
	{"ORDERFLOW_NATS_SYNC", natsdev.DefaultSyncInterval.String(), "when the NATS server syncs its JetStream file store to disk. " +
		"A Go duration: that often; a crash of orderflow loses nothing acknowledged, a power loss or OS crash can lose the streams' last interval or so, " +
		"which for ORDER_EVENTS the outbox relay restores from the outbox (when it becomes active or reconnects, it publishes again what the stream lacks of the events published in the last interval plus " +
		relay.DefaultRepublishMargin.String() + "; the README says what the other streams risk). " +
		"always: every message before it is acknowledged; nothing is lost even on power loss and nothing needs re-publishing, but the disk's flush rate bounds the streams (a few thousand messages a second). " +
		"The embedded server runs with it; with NATS_URL, set it to that server's setting (unset: 2m, NATS's default sync_interval)", relayCmds},
	{"ORDERFLOW_RELAY_POLL", "250ms", "how often the outbox relay looks for rows no in-process commit woke it for", relayCmds},
	{"ORDERFLOW_RELAY_BATCH", "1000", "outbox rows the relay claims and publishes at a time", relayCmds},
	{"ORDERFLOW_OUTBOX_RETENTION", "168h", "how long published outbox rows are kept before the relay deletes them", relayCmds},
	{"ORDERFLOW_DEV_WORKER", "on", "off: orderflow dev runs no Temporal worker of its own, and its ready banner gives the command that runs one beside it (orderflow worker), " +
		"which can then be stopped, killed and started again while orders run: their workflows wait for it and go on", embedded},
	{"ORDERFLOW_COURIER_DELAY", "", "the simulated courier delivers every accepted order this long after acceptance (a Go duration, e.g. 30s): orderflow dev runs one when it is set, orderflow courier needs it", []string{"dev", "courier"}},
	{"ORDERFLOW_STREAM_MAX_AGE", "720h", "how long the ORDER_EVENTS and DELIVERY_EVENTS streams keep events (the event archive)", relayCmds},
}

// Config is every setting, read once from the environment by FromEnv.
type Config struct {
	DataDir   string
	HTTPAddr  string
	LogLevel  slog.Level
	LogJSON   bool
	TaskQueue string

	// Temporal holds the client options from the TEMPORAL_* variables;
	// TemporalExternal is true when TEMPORAL_ADDRESS names a server.
	Temporal         client.Options
	TemporalExternal bool
	TemporalAddr     string
	UIAddr           string
	// The embedded Temporal server's persistence. TemporalPersistence is ""
	// and TemporalShards 0 when their variables are unset, so that an
	// existing store keeps its kind and its shard count.
	TemporalPersistence   devserver.Persistence
	TemporalSQLiteJournal string
	TemporalSQLiteSync    string
	TemporalShards        int32

	DatabaseURL string
	PGAddr      string

	NATSURL  string
	NATSAddr string
	// EmbeddedNATS, when set, is the NATS server at NATSURL running in
	// this process (orderflow dev and bench set it from the stack they
	// start; no variable does): the process's connection then skips the
	// network (see natsdev).
	EmbeddedNATS nats.InProcessConnProvider
	// NATSSyncAlways and NATSSyncInterval are the NATS server's sync
	// setting (ORDERFLOW_NATS_SYNC): the embedded server runs with it, and
	// the relay's re-publish window follows from it.
	NATSSyncAlways   bool
	NATSSyncInterval time.Duration

	// The outbox relay and the streams it publishes to.
	RelayPoll       time.Duration
	RelayBatch      int
	OutboxRetention time.Duration
	StreamMaxAge    time.Duration

	// AcceptTimeout, when non-zero, overrides every restaurant's.
	AcceptTimeout time.Duration
	DeliverySLA   time.Duration
	// CourierDelay, when non-zero, runs the simulated courier with it.
	CourierDelay time.Duration
	// DevWorker is whether orderflow dev runs the worker itself
	// (ORDERFLOW_DEV_WORKER).
	DevWorker bool

	// invalid is what FromEnv found wrong, for a command that reads
	// arguments of its own: it answers -h without a configuration, and
	// returns Valid's error once it needs one.
	invalid error
}

// Valid returns the configuration's mistake, as a *configError, or nil.
func (c Config) Valid() error { return c.invalid }

// configError is a mistake in the environment: Main prints it as a plain
// line and exits 2, as for a mistake in the arguments.
type configError struct{ err error }

func (e *configError) Error() string { return "configuration: " + e.err.Error() }

// FromEnv reads the configuration from env, applying defaults.
func FromEnv(env envconfig.EnvLookup) (Config, error) {
	get := func(name string) string {
		v, _ := env.LookupEnv(name)
		return strings.TrimSpace(v)
	}
	or := func(name string) string {
		if v := get(name); v != "" {
			return v
		}
		for _, ev := range envVars {
			if ev.name == name {
				return ev.def
			}
		}
		return ""
	}
	cfg := Config{
		DataDir:      or("ORDERFLOW_DATA_DIR"),
		HTTPAddr:     or("ORDERFLOW_HTTP_ADDR"),
		TaskQueue:    or("ORDERFLOW_TASK_QUEUE"),
		TemporalAddr: or("ORDERFLOW_TEMPORAL_ADDR"),
		UIAddr:       or("ORDERFLOW_UI_ADDR"),
		DatabaseURL:  get("DATABASE_URL"),
		PGAddr:       or("ORDERFLOW_PG_ADDR"),
		NATSURL:      get("NATS_URL"),
		NATSAddr:     or("ORDERFLOW_NATS_ADDR"),
	}
	if strings.EqualFold(cfg.UIAddr, "off") {
		cfg.UIAddr = ""
	}
	if err := temporalStoreVars(&cfg, get, or); err != nil {
		return cfg, err
	}
	if err := natsSyncVar(&cfg, get); err != nil {
		return cfg, err
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(or("ORDERFLOW_LOG_LEVEL"))); err != nil {
		return cfg, fmt.Errorf("ORDERFLOW_LOG_LEVEL: %q is not debug, info, warn or error", or("ORDERFLOW_LOG_LEVEL"))
	}
	switch f := strings.ToLower(or("ORDERFLOW_LOG_FORMAT")); f {
	case "text":
	case "json":
		cfg.LogJSON = true
	default:
		return cfg, fmt.Errorf("ORDERFLOW_LOG_FORMAT: %q is neither text nor json", or("ORDERFLOW_LOG_FORMAT"))
	}
	switch w := strings.ToLower(or("ORDERFLOW_DEV_WORKER")); w {
	case "on", "off":
		cfg.DevWorker = w == "on"
	default:
		return cfg, fmt.Errorf("ORDERFLOW_DEV_WORKER: %q is neither on nor off", or("ORDERFLOW_DEV_WORKER"))
	}
	var err error
	if cfg.AcceptTimeout, err = durationVar(env, "ORDERFLOW_ACCEPT_TIMEOUT"); err != nil {
		return cfg, err
	}
	if cfg.DeliverySLA, err = durationVar(env, "ORDERFLOW_DELIVERY_SLA"); err != nil {
		return cfg, err
	}
	if cfg.DeliverySLA == 0 {
		cfg.DeliverySLA = 45 * time.Minute
	}
	if cfg.CourierDelay, err = durationVar(env, "ORDERFLOW_COURIER_DELAY"); err != nil {
		return cfg, err
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
		// min, if any, is the least value that makes sense; why says why.
		min time.Duration
		why string
	}{
		{"ORDERFLOW_RELAY_POLL", &cfg.RelayPoll, minRelayPoll, "polling more often only burns CPU: commits wake the relay anyway"},
		{"ORDERFLOW_OUTBOX_RETENTION", &cfg.OutboxRetention, 0, ""},
		{"ORDERFLOW_STREAM_MAX_AGE", &cfg.StreamMaxAge, events.DefaultDuplicateWindow, "the streams' duplicate window, which must fit in it"},
	} {
		if *d.dst, err = time.ParseDuration(or(d.name)); err != nil || *d.dst <= 0 {
			return cfg, fmt.Errorf("%s: %q is not a positive Go duration (e.g. 250ms, 168h)", d.name, or(d.name))
		}
		if *d.dst < d.min {
			return cfg, fmt.Errorf("%s: %s is less than %s, %s", d.name, *d.dst, d.min, d.why)
		}
	}
	// The batch is a query's LIMIT, an int4: a larger value would wrap
	// around (4294967296 to 0, a relay that claims nothing, silently).
	batch, err := strconv.ParseInt(or("ORDERFLOW_RELAY_BATCH"), 10, 32)
	if err != nil || batch <= 0 {
		return cfg, fmt.Errorf("ORDERFLOW_RELAY_BATCH: %q is not a positive integer of at most %d", or("ORDERFLOW_RELAY_BATCH"), math.MaxInt32)
	}
	cfg.RelayBatch = int(batch)
	opts, err := temporal.LoadClientOptions(env)
	if err != nil {
		return cfg, err
	}
	cfg.Temporal = opts
	// An address from TEMPORAL_ADDRESS or from a profile's address names
	// an external server.
	cfg.TemporalExternal = opts.HostPort != ""
	if !cfg.TemporalExternal && (opts.Credentials != nil || opts.ConnectionOptions.TLS != nil) {
		return cfg, errors.New("TEMPORAL_API_KEY or TEMPORAL_TLS* (or a profile's api_key or tls) is set but no Temporal address: " +
			"the embedded Temporal server takes plaintext only; set TEMPORAL_ADDRESS to the server they are for, or unset them")
	}
	if !cfg.TemporalExternal {
		cfg.Temporal.HostPort = cfg.TemporalAddr
		// The embedded server is this process, on loopback: gzip (the SDK's
		// default, right across a network) would only burn CPU, about 4% of
		// the process's under load.
		cfg.Temporal.ConnectionOptions.GrpcCompression = &client.GrpcCompressionNone{}
	}
	if cfg.Temporal.Namespace == "" {
		cfg.Temporal.Namespace = client.DefaultNamespace
	}
	return cfg, nil
}

// temporalStoreVars reads the embedded Temporal server's persistence
// settings.
func temporalStoreVars(cfg *Config, get, or func(string) string) error {
	oneOf := func(name string, allowed ...string) (string, error) {
		v := strings.ToLower(or(name))
		for _, a := range allowed {
			if v == a {
				return v, nil
			}
		}
		return "", fmt.Errorf("%s: %q is not one of %s", name, or(name), strings.Join(allowed, ", "))
	}
	// Unset, an existing data dir keeps the store it has (devserver
	// decides); only a set value is checked here.
	if get("ORDERFLOW_TEMPORAL_PERSISTENCE") != "" {
		p, err := oneOf("ORDERFLOW_TEMPORAL_PERSISTENCE", string(devserver.Postgres), string(devserver.SQLite))
		if err != nil {
			return err
		}
		cfg.TemporalPersistence = devserver.Persistence(p)
	}
	var err error
	if cfg.TemporalSQLiteJournal, err = oneOf("ORDERFLOW_TEMPORAL_SQLITE_JOURNAL", devserver.JournalWAL, devserver.JournalDelete); err != nil {
		return err
	}
	if cfg.TemporalSQLiteSync, err = oneOf("ORDERFLOW_TEMPORAL_SQLITE_SYNC", devserver.SyncFull, devserver.SyncNormal); err != nil {
		return err
	}
	if v := get("ORDERFLOW_TEMPORAL_SHARDS"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n <= 0 {
			return fmt.Errorf("ORDERFLOW_TEMPORAL_SHARDS: %q is not a positive integer", v)
		}
		cfg.TemporalShards = int32(n)
	}
	return nil
}

// externalNATSSyncInterval is NATS's own default sync_interval, assumed
// for a server named by NATS_URL when ORDERFLOW_NATS_SYNC is unset.
const externalNATSSyncInterval = 2 * time.Minute

// The least ORDERFLOW_RELAY_POLL and ORDERFLOW_NATS_SYNC taken (NATS
// panics on a sync interval of a nanosecond).
const (
	minRelayPoll = 10 * time.Millisecond
	minNATSSync  = 10 * time.Millisecond
)

// natsSyncVar reads ORDERFLOW_NATS_SYNC: "always" or a positive duration.
func natsSyncVar(cfg *Config, get func(string) string) error {
	v := get("ORDERFLOW_NATS_SYNC")
	switch {
	case v == "" && cfg.NATSURL != "":
		cfg.NATSSyncInterval = externalNATSSyncInterval
	case v == "":
		cfg.NATSSyncInterval = natsdev.DefaultSyncInterval
	case strings.EqualFold(v, "always"):
		cfg.NATSSyncAlways = true
	default:
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("ORDERFLOW_NATS_SYNC: %q is neither always nor a positive Go duration (e.g. 1s)", v)
		}
		if d < minNATSSync {
			return fmt.Errorf("ORDERFLOW_NATS_SYNC: %s is less than %s; for a sync on every write, say always", d, minNATSSync)
		}
		cfg.NATSSyncInterval = d
	}
	return nil
}

// RepublishWindow is the outbox relay's re-publish window for the NATS
// sync setting: none when NATS syncs every message, the sync interval plus
// a margin otherwise (see events/relay).
func (c Config) RepublishWindow() time.Duration {
	if c.NATSSyncAlways {
		return 0
	}
	return c.NATSSyncInterval + relay.DefaultRepublishMargin
}

// durationVar parses an optional Go duration.
func durationVar(env envconfig.EnvLookup, name string) (time.Duration, error) {
	v, ok := env.LookupEnv(name)
	if !ok || strings.TrimSpace(v) == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: %q is not a positive Go duration (e.g. 30s, 10m)", name, v)
	}
	return d, nil
}
