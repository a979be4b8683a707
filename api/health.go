package api

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/nats-io/nats.go"
	"go.temporal.io/sdk/client"
)

// TemporalCheck reports whether the Temporal frontend answers.
func TemporalCheck(c client.Client) Check {
	return Check{Name: "temporal", Check: func(ctx context.Context) error {
		_, err := c.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	}}
}

// PostgresCheck reports whether PostgreSQL answers.
func PostgresCheck(db *sql.DB) Check {
	return Check{Name: "postgres", Check: db.PingContext}
}

// NATSCheck reports whether the NATS connection is up and the server
// answers a round trip.
func NATSCheck(nc *nats.Conn) Check {
	return Check{Name: "nats", Check: func(ctx context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("nats: %s", nc.Status())
		}
		return nc.FlushWithContext(ctx)
	}}
}
