package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/analytics"
	"github.com/orderflow/orderflow/courier"
	"github.com/orderflow/orderflow/events/consumer"
	"github.com/orderflow/orderflow/inbound"
	"github.com/orderflow/orderflow/promotions"
)

// The bounded contexts that consume events, each runnable on its own.

func runPromotions(ctx context.Context, cfg Config, logger *slog.Logger, _ []string) error {
	return runConsumers(ctx, cfg, logger, false, parts{promotions: true})
}

func runAnalytics(ctx context.Context, cfg Config, logger *slog.Logger, _ []string) error {
	return runConsumers(ctx, cfg, logger, false, parts{analytics: true})
}

func runInbound(ctx context.Context, cfg Config, logger *slog.Logger, _ []string) error {
	return runConsumers(ctx, cfg, logger, true, parts{inbound: true})
}

func runCourier(ctx context.Context, cfg Config, logger *slog.Logger, _ []string) error {
	if cfg.CourierDelay <= 0 {
		return errors.New("ORDERFLOW_COURIER_DELAY is not set: the simulated courier needs to know how long a delivery takes (e.g. 30s)")
	}
	return runConsumers(ctx, cfg, logger, false, parts{courier: true})
}

// runConsumers runs consumers against DATABASE_URL and NATS_URL (and
// Temporal when needTemporal). The database must be migrated (orderflow
// migrate); the consumers wait for their streams to be created.
func runConsumers(ctx context.Context, cfg Config, logger *slog.Logger, needTemporal bool, p parts) error {
	d, err := connect(ctx, cfg, logger, dbMigrated, true, needTemporal)
	if err != nil {
		return err
	}
	defer d.Close()
	return serve(ctx, cfg, logger, d, p, nil)
}

// newConsumers builds the consumers p asks for, each a part for serve.
func newConsumers(cfg Config, logger *slog.Logger, d *deps, p parts) ([]part, error) {
	if !p.promotions && !p.analytics && !p.inbound && !p.courier {
		return nil, nil
	}
	js, err := jetstream.New(d.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	var configs []consumer.Config
	if p.promotions {
		configs = append(configs, promotions.New(d.store, logger).ConsumerConfig(js))
	}
	if p.analytics {
		configs = append(configs, analytics.New(d.store, logger).ConsumerConfig(js))
	}
	if p.inbound {
		configs = append(configs, inbound.NewDeliveries(d.store, d.temporal, logger).ConsumerConfig(js))
	}
	if p.courier {
		c, err := courier.New(courier.Config{Delay: cfg.CourierDelay, Store: d.store, JetStream: js, Logger: logger})
		if err != nil {
			return nil, err
		}
		configs = append(configs, c.ConsumerConfig())
	}
	var consumers []part
	for _, cc := range configs {
		c, err := consumer.New(cc)
		if err != nil {
			return nil, err
		}
		consumers = append(consumers, part{run: c.Run, started: c.Started()})
	}
	return consumers, nil
}
