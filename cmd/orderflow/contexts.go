package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/analytics"
	"github.com/orderflow/orderflow/courier"
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
	d, err := connect(ctx, cfg, logger, true, true, needTemporal)
	if err != nil {
		return err
	}
	defer d.Close()
	return serve(ctx, cfg, logger, d, p, nil)
}

// startConsumers adds the consumers p asks for to g.
func startConsumers(ctx context.Context, g *errgroup.Group, cfg Config, logger *slog.Logger, d *deps, p parts) error {
	if !p.promotions && !p.analytics && !p.inbound && !p.courier {
		return nil
	}
	js, err := jetstream.New(d.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if p.promotions {
		svc := promotions.New(d.store, logger)
		g.Go(func() error { return svc.Run(ctx, js) })
	}
	if p.analytics {
		svc := analytics.New(d.store, logger)
		g.Go(func() error { return svc.Run(ctx, js) })
	}
	if p.inbound {
		in := inbound.NewDeliveries(d.store, d.temporal, logger)
		g.Go(func() error { return in.Run(ctx, js) })
	}
	if p.courier {
		c, err := courier.New(courier.Config{Delay: cfg.CourierDelay, Store: d.store, JetStream: js, Logger: logger})
		if err != nil {
			return err
		}
		g.Go(func() error { return c.Run(ctx) })
	}
	return nil
}
