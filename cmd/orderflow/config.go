package main

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"

	"github.com/orderflow/orderflow/temporal"
)

// envVar documents one environment variable; --help prints the table.
type envVar struct {
	name, def, help string
}

var envVars = []envVar{
	{"ORDERFLOW_DATA_DIR", ".orderflow", "where the embedded components keep their data"},
	{"ORDERFLOW_HTTP_ADDR", "127.0.0.1:8080", "HTTP API listen address"},
	{"ORDERFLOW_LOG_LEVEL", "info", "debug, info, warn or error"},
	{"ORDERFLOW_LOG_FORMAT", "text", "text or json"},
	{"ORDERFLOW_TASK_QUEUE", temporal.DefaultTaskQueue, "Temporal task queue of the order worker"},
	{"ORDERFLOW_ACCEPT_TIMEOUT", "", "overrides every restaurant's accept timeout (a Go duration, e.g. 30s), for demos and tests; unset: per restaurant (10m)"},
	{"ORDERFLOW_DELIVERY_SLA", "45m", "time from acceptance to delivery before an order is escalated"},
	{"TEMPORAL_ADDRESS", "", "external Temporal frontend (host:port); unset: embedded server"},
	{"TEMPORAL_NAMESPACE", "default", "Temporal namespace"},
	{"TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE", "", "Temporal Cloud / TLS settings, as every Temporal SDK reads them"},
	{"ORDERFLOW_TEMPORAL_ADDR", "127.0.0.1:7233", "embedded Temporal frontend listen address"},
	{"ORDERFLOW_UI_ADDR", "127.0.0.1:8233", "embedded Temporal Web UI listen address (\"off\" disables it)"},
	{"DATABASE_URL", "", "external PostgreSQL (postgres://...); unset: private cluster from the machine's binaries"},
	{"ORDERFLOW_PG_ADDR", "127.0.0.1:15432", "private PostgreSQL listen address"},
	{"NATS_URL", "", "external NATS with JetStream (nats://...); unset: embedded server"},
	{"ORDERFLOW_NATS_ADDR", "127.0.0.1:4222", "embedded NATS listen address"},
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

	DatabaseURL string
	PGAddr      string

	NATSURL  string
	NATSAddr string

	// AcceptTimeout, when non-zero, overrides every restaurant's.
	AcceptTimeout time.Duration
	DeliverySLA   time.Duration
}

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
	if cfg.UIAddr == "off" {
		cfg.UIAddr = ""
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(or("ORDERFLOW_LOG_LEVEL"))); err != nil {
		return cfg, fmt.Errorf("ORDERFLOW_LOG_LEVEL: %w", err)
	}
	switch f := or("ORDERFLOW_LOG_FORMAT"); f {
	case "text":
	case "json":
		cfg.LogJSON = true
	default:
		return cfg, fmt.Errorf("ORDERFLOW_LOG_FORMAT: %q is neither text nor json", f)
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
	opts, err := temporal.LoadClientOptions(env)
	if err != nil {
		return cfg, err
	}
	cfg.Temporal = opts
	cfg.TemporalExternal = get("TEMPORAL_ADDRESS") != ""
	if !cfg.TemporalExternal {
		cfg.Temporal.HostPort = cfg.TemporalAddr
	}
	if cfg.Temporal.Namespace == "" {
		cfg.Temporal.Namespace = client.DefaultNamespace
	}
	return cfg, nil
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
