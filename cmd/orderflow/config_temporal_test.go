package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/temporal/devserver"
)

func TestFromEnvTemporalStore(t *testing.T) {
	type store struct {
		persistence   devserver.Persistence
		journal, sync string
		shards        int32
	}
	tests := []struct {
		name string
		vars map[string]string
		want store
	}{
		{
			name: "unset: the data dir's store, default sqlite settings, its shard count",
			want: store{"", devserver.DefaultSQLiteJournal, devserver.DefaultSQLiteSync, 0},
		},
		{
			name: "postgres with 8 shards",
			vars: map[string]string{"ORDERFLOW_TEMPORAL_PERSISTENCE": "postgres", "ORDERFLOW_TEMPORAL_SHARDS": "8"},
			want: store{devserver.Postgres, devserver.DefaultSQLiteJournal, devserver.DefaultSQLiteSync, 8},
		},
		{
			name: "sqlite wal normal, any case",
			vars: map[string]string{"ORDERFLOW_TEMPORAL_PERSISTENCE": "SQLite", "ORDERFLOW_TEMPORAL_SQLITE_JOURNAL": "WAL", "ORDERFLOW_TEMPORAL_SQLITE_SYNC": "Normal"},
			want: store{devserver.SQLite, devserver.JournalWAL, devserver.SyncNormal, 0},
		},
		{
			name: "sqlite delete full",
			vars: map[string]string{"ORDERFLOW_TEMPORAL_PERSISTENCE": "sqlite", "ORDERFLOW_TEMPORAL_SQLITE_JOURNAL": "delete", "ORDERFLOW_TEMPORAL_SQLITE_SYNC": "full"},
			want: store{devserver.SQLite, devserver.JournalDelete, devserver.SyncFull, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := FromEnv(newEnv(t, tt.vars))
			if err != nil {
				t.Fatalf("FromEnv: %v", err)
			}
			got := store{cfg.TemporalPersistence, cfg.TemporalSQLiteJournal, cfg.TemporalSQLiteSync, cfg.TemporalShards}
			if got != tt.want {
				t.Errorf("temporal store settings = %+v; want %+v", got, tt.want)
			}
		})
	}
}

func TestFromEnvRejectsInvalidTemporalStore(t *testing.T) {
	tests := []struct {
		name, value string
	}{
		{"ORDERFLOW_TEMPORAL_PERSISTENCE", "mysql"},
		{"ORDERFLOW_TEMPORAL_SQLITE_JOURNAL", "memory"},
		{"ORDERFLOW_TEMPORAL_SQLITE_SYNC", "off"},
		{"ORDERFLOW_TEMPORAL_SHARDS", "0"},
		{"ORDERFLOW_TEMPORAL_SHARDS", "four"},
		// The SDK ignores a TEMPORAL_TLS it cannot read.
		{"TEMPORAL_TLS", "maybe"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
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

// TestFromEnvTemporalProfile: a profile's address names an external
// server, as TEMPORAL_ADDRESS does (it was replaced by the embedded
// server's, keeping the profile's namespace); TLS or an API key without
// any address is refused, since the embedded server takes plaintext only
// (it failed at connect with a TLS handshake error naming nothing).
func TestFromEnvTemporalProfile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "temporal.toml")
	if err := os.WriteFile(file, []byte("[profile.prod]\naddress = \"temporal.example:7233\"\nnamespace = \"prodns\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := FromEnv(newEnv(t, map[string]string{"TEMPORAL_CONFIG_FILE": file, "TEMPORAL_PROFILE": "prod"}))
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	if !cfg.TemporalExternal || cfg.Temporal.HostPort != "temporal.example:7233" || cfg.Temporal.Namespace != "prodns" {
		t.Errorf("profile prod = external %v, %s namespace %s; want external temporal.example:7233, prodns", cfg.TemporalExternal, cfg.Temporal.HostPort, cfg.Temporal.Namespace)
	}
	if cfg, err := FromEnv(newEnv(t, nil)); err != nil || cfg.TemporalExternal || cfg.Temporal.HostPort != cfg.TemporalAddr {
		t.Errorf("no Temporal variables = %v, external %v, %s; want the embedded server at %s", err, cfg.TemporalExternal, cfg.Temporal.HostPort, cfg.TemporalAddr)
	}
	for _, vars := range []map[string]string{{"TEMPORAL_API_KEY": "abc"}, {"TEMPORAL_TLS": "true"}} {
		if _, err := FromEnv(newEnv(t, vars)); err == nil || !strings.Contains(err.Error(), "embedded Temporal server takes plaintext only") {
			t.Errorf("FromEnv(%v) = %v; want the error that says TLS needs TEMPORAL_ADDRESS", vars, err)
		}
	}
}
