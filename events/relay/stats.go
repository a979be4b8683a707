package relay

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/orderflow/orderflow/db"
)

// The publish lag is computed over the rows published in the last
// LagWindow, at most lagMaxRows of them (the latest).
const (
	LagWindow  = 5 * time.Minute
	lagMaxRows = 10000
)

// Stats describes the outbox as the relay sees it.
type Stats struct {
	// Backlog is the number of unpublished rows.
	Backlog int64
	// Failing is how many of them failed to publish at least once.
	Failing int64
	// Oldest is the first unpublished row, the head of the relay's queue;
	// nil when the backlog is empty.
	Oldest *OldestUnpublished
	// Lag is the publish lag of recently published rows.
	Lag Lag
}

// OldestUnpublished is the first unpublished row.
type OldestUnpublished struct {
	ID         int64
	OccurredAt time.Time
	// RecordedAt is when the row was written.
	RecordedAt time.Time
	// Age is how long ago it was written: how long it has waited, on the
	// database's clock.
	Age       time.Duration
	Attempts  int32
	LastError string
}

// Lag is the distribution of published_at - recorded_at (from the start
// of the statement that wrote the row to the stream's acknowledgement)
// over the Events rows published in the last Window.
type Lag struct {
	Window        time.Duration
	Events        int64
	P50, P99, Max time.Duration
}

// ReadStats computes the outbox statistics from the database, so that any
// process can report them, whether or not it runs the active relay.
func ReadStats(ctx context.Context, q *db.Queries) (Stats, error) {
	var s Stats
	b, err := q.OutboxBacklog(ctx)
	if err != nil {
		return s, fmt.Errorf("outbox backlog: %w", err)
	}
	s.Backlog, s.Failing = b.Backlog, b.Failing
	head, err := q.OldestUnpublishedOutboxEvent(ctx)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return s, fmt.Errorf("oldest unpublished outbox row: %w", err)
	default:
		s.Oldest = &OldestUnpublished{
			ID: head.ID, OccurredAt: head.OccurredAt, RecordedAt: head.RecordedAt, Age: max(seconds(head.AgeSeconds), 0),
			Attempts: head.Attempts, LastError: head.LastError.String,
		}
	}
	lag, err := q.OutboxPublishLag(ctx, db.OutboxPublishLagParams{Since: time.Now().Add(-LagWindow), MaxRows: lagMaxRows})
	if err != nil {
		return s, fmt.Errorf("outbox publish lag: %w", err)
	}
	s.Lag = Lag{Window: LagWindow, Events: lag.Events, P50: seconds(lag.P50Seconds), P99: seconds(lag.P99Seconds), Max: seconds(lag.MaxSeconds)}
	return s, nil
}

// OldestAge is the age of the oldest unpublished row, zero without one.
func (s Stats) OldestAge() time.Duration {
	if s.Oldest == nil {
		return 0
	}
	return s.Oldest.Age
}

func seconds(f float64) time.Duration {
	return time.Duration(math.Round(f * float64(time.Second)))
}
