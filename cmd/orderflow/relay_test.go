package main

import (
	"strings"
	"testing"
	"time"
)

func TestFromEnvRelaySettings(t *testing.T) {
	tests := []struct {
		name    string
		vars    map[string]string
		want    func(Config) bool
		wantErr string
	}{
		{
			name: "defaults",
			want: func(c Config) bool {
				return c.RelayPoll == 250*time.Millisecond && c.RelayBatch == 1000 &&
					c.OutboxRetention == 7*24*time.Hour && c.StreamMaxAge == 30*24*time.Hour
			},
		},
		{
			name: "set",
			vars: map[string]string{
				"ORDERFLOW_RELAY_POLL": "1s", "ORDERFLOW_RELAY_BATCH": "500",
				"ORDERFLOW_OUTBOX_RETENTION": "24h", "ORDERFLOW_STREAM_MAX_AGE": "2160h",
			},
			want: func(c Config) bool {
				return c.RelayPoll == time.Second && c.RelayBatch == 500 &&
					c.OutboxRetention == 24*time.Hour && c.StreamMaxAge == 90*24*time.Hour
			},
		},
		{name: "bad poll", vars: map[string]string{"ORDERFLOW_RELAY_POLL": "often"}, wantErr: "ORDERFLOW_RELAY_POLL"},
		{name: "zero retention", vars: map[string]string{"ORDERFLOW_OUTBOX_RETENTION": "0s"}, wantErr: "ORDERFLOW_OUTBOX_RETENTION"},
		{name: "days are not a Go duration", vars: map[string]string{"ORDERFLOW_STREAM_MAX_AGE": "30d"}, wantErr: "ORDERFLOW_STREAM_MAX_AGE"},
		{name: "poll too often", vars: map[string]string{"ORDERFLOW_RELAY_POLL": "1ns"}, wantErr: "ORDERFLOW_RELAY_POLL: 1ns is less than 10ms"},
		{name: "max age below the duplicate window", vars: map[string]string{"ORDERFLOW_STREAM_MAX_AGE": "30m"}, wantErr: "ORDERFLOW_STREAM_MAX_AGE: 30m0s is less than 1h0m0s"},
		{name: "NATS sync too often", vars: map[string]string{"ORDERFLOW_NATS_SYNC": "1ns"}, wantErr: "ORDERFLOW_NATS_SYNC: 1ns is less than 10ms"},
		{name: "negative batch", vars: map[string]string{"ORDERFLOW_RELAY_BATCH": "-5"}, wantErr: "ORDERFLOW_RELAY_BATCH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := FromEnv(newEnv(t, tt.vars))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(cfg) {
				t.Errorf("relay settings = poll %s, batch %d, retention %s, max age %s", cfg.RelayPoll, cfg.RelayBatch, cfg.OutboxRetention, cfg.StreamMaxAge)
			}
		})
	}
}
