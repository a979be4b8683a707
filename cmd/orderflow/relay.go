package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/relay"
)

// runRelay runs the outbox relay alone: active when it wins the lock, a
// standby otherwise.
func runRelay(ctx context.Context, cfg Config, logger *slog.Logger, _ []string) error {
	d, err := connect(ctx, cfg, logger, dbMigrated, true, false)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := ensureStreams(ctx, cfg, d.nc); err != nil {
		return err
	}
	return serve(ctx, cfg, logger, d, parts{relay: true}, nil)
}

// ensureStreams creates or updates the streams the relay publishes to.
func ensureStreams(ctx context.Context, cfg Config, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return events.EnsureStreams(ctx, js, events.StreamConfig{MaxAge: cfg.StreamMaxAge})
}

// newRelay builds the relay from the configuration and the shared
// connections.
func newRelay(cfg Config, logger *slog.Logger, d *deps) (*relay.Relay, error) {
	return relay.New(relay.Config{
		DB: d.store.DB, NATS: d.nc, Logger: logger,
		BatchSize: cfg.RelayBatch, PollInterval: cfg.RelayPoll, Retention: cfg.OutboxRetention,
		RepublishWindow: cfg.RepublishWindow(),
	})
}
