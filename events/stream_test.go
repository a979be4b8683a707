package events_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/natsdev"
)

// TestEnsureStreams: both streams are created as the bus contract says,
// a second call changes nothing, and a new max age updates them in place.
func TestEnsureStreams(t *testing.T) {
	ctx := context.Background()
	js := startNATS(t)
	if err := events.EnsureStreams(ctx, js, events.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, js, events.StreamConfig{}); err != nil {
		t.Fatalf("second call: %v", err)
	}
	for _, tt := range []struct {
		stream, subjects string
	}{
		{events.OrderStream, "orderflow.order.>"},
		{events.DeliveryStream, "orderflow.delivery.>"},
	} {
		cfg := streamConfig(t, js, tt.stream)
		if len(cfg.Subjects) != 1 || cfg.Subjects[0] != tt.subjects {
			t.Errorf("%s subjects = %v, want [%s]", tt.stream, cfg.Subjects, tt.subjects)
		}
		if cfg.Storage != jetstream.FileStorage || cfg.Retention != jetstream.LimitsPolicy || cfg.Discard != jetstream.DiscardOld {
			t.Errorf("%s: storage %v, retention %v, discard %v; want file, limits, old", tt.stream, cfg.Storage, cfg.Retention, cfg.Discard)
		}
		if cfg.MaxAge != events.DefaultMaxAge || cfg.Duplicates != events.DefaultDuplicateWindow || cfg.Duplicates < 10*time.Minute {
			t.Errorf("%s: max age %s, duplicates %s; want %s and %s", tt.stream, cfg.MaxAge, cfg.Duplicates, events.DefaultMaxAge, events.DefaultDuplicateWindow)
		}
	}

	if err := events.EnsureStreams(ctx, js, events.StreamConfig{MaxAge: 72 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if got := streamConfig(t, js, events.OrderStream).MaxAge; got != 72*time.Hour {
		t.Errorf("max age after the update = %s, want 72h", got)
	}
	if err := events.EnsureStreams(ctx, js, events.StreamConfig{MaxAge: time.Minute}); err == nil {
		t.Error("a duplicate window longer than the max age was accepted")
	}
}

func streamConfig(tb testing.TB, js jetstream.JetStream, name string) jetstream.StreamConfig {
	tb.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		tb.Fatalf("stream %s: %v", name, err)
	}
	return s.CachedInfo().Config
}

// startNATS runs the embedded server on a free port for the test.
func startNATS(tb testing.TB) jetstream.JetStream {
	tb.Helper()
	s, err := natsdev.Start(natsdev.Config{
		StoreDir: filepath.Join(tb.TempDir(), "nats"), Addr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatalf("start nats: %v", err)
	}
	tb.Cleanup(s.Stop)
	nc, err := nats.Connect(s.URL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}
