package main

import (
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/events/natsdev"
	"github.com/orderflow/orderflow/events/relay"
)

// TestNATSSync: ORDERFLOW_NATS_SYNC sets the NATS sync setting and, from
// it, the relay's re-publish window.
func TestNATSSync(t *testing.T) {
	for _, tt := range []struct {
		name         string
		vars         map[string]string
		wantAlways   bool
		wantInterval time.Duration
		wantWindow   time.Duration
	}{
		{name: "default: the embedded server's interval", vars: nil,
			wantInterval: natsdev.DefaultSyncInterval, wantWindow: natsdev.DefaultSyncInterval + relay.DefaultRepublishMargin},
		{name: "external server: NATS's own default", vars: map[string]string{"NATS_URL": "nats://nats.example.com:4222"},
			wantInterval: 2 * time.Minute, wantWindow: 2*time.Minute + relay.DefaultRepublishMargin},
		{name: "an interval", vars: map[string]string{"ORDERFLOW_NATS_SYNC": "250ms"},
			wantInterval: 250 * time.Millisecond, wantWindow: 250*time.Millisecond + relay.DefaultRepublishMargin},
		{name: "an interval for an external server", vars: map[string]string{"NATS_URL": "nats://n:4222", "ORDERFLOW_NATS_SYNC": "10s"},
			wantInterval: 10 * time.Second, wantWindow: 10*time.Second + relay.DefaultRepublishMargin},
		{name: "always: no re-publish", vars: map[string]string{"ORDERFLOW_NATS_SYNC": "always"}, wantAlways: true},
		{name: "ALWAYS", vars: map[string]string{"ORDERFLOW_NATS_SYNC": " ALWAYS "}, wantAlways: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := FromEnv(newEnv(t, tt.vars))
			if err != nil {
				t.Fatalf("FromEnv: %v", err)
			}
			if cfg.NATSSyncAlways != tt.wantAlways || cfg.NATSSyncInterval != tt.wantInterval || cfg.RepublishWindow() != tt.wantWindow {
				t.Errorf("always %v, interval %s, window %s; want %v, %s, %s",
					cfg.NATSSyncAlways, cfg.NATSSyncInterval, cfg.RepublishWindow(), tt.wantAlways, tt.wantInterval, tt.wantWindow)
			}
			scfg := devStackConfig(cfg, t.TempDir(), nil)
			if scfg.NATSSyncAlways != cfg.NATSSyncAlways || scfg.NATSSyncInterval != cfg.NATSSyncInterval {
				t.Errorf("devstack gets always %v, interval %s; want the configuration's", scfg.NATSSyncAlways, scfg.NATSSyncInterval)
			}
		})
	}
	for _, bad := range []string{"sometimes", "0s", "-1s", "1"} {
		t.Run("invalid "+bad, func(t *testing.T) {
			_, err := FromEnv(newEnv(t, map[string]string{"ORDERFLOW_NATS_SYNC": bad}))
			if err == nil || !strings.Contains(err.Error(), "ORDERFLOW_NATS_SYNC") {
				t.Errorf("FromEnv with ORDERFLOW_NATS_SYNC=%s: error %v; want one naming the variable", bad, err)
			}
		})
	}
}
