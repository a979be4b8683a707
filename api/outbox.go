package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/orderflow/orderflow/events/relay"
)

// outboxStatsView is the outbox as the relay sees it; durations are in
// seconds.
type outboxStatsView struct {
	// Backlog is the number of events not yet published.
	Backlog int64 `json:"backlog"`
	// Failing is how many of them failed to publish at least once.
	Failing int64 `json:"failing"`
	// OldestUnpublished is the head of the relay's queue, null when the
	// backlog is empty.
	OldestUnpublished *oldestUnpublishedView `json:"oldest_unpublished"`
	PublishLag        publishLagView         `json:"publish_lag"`
}

type oldestUnpublishedView struct {
	ID         int64     `json:"id"`
	OccurredAt time.Time `json:"occurred_at"`
	RecordedAt time.Time `json:"recorded_at"`
	AgeSeconds float64   `json:"age_seconds"`
	Attempts   int32     `json:"attempts"`
	LastError  string    `json:"last_error,omitempty"`
}

type publishLagView struct {
	WindowSeconds float64 `json:"window_seconds"`
	Events        int64   `json:"events"`
	P50Seconds    float64 `json:"p50_seconds"`
	P99Seconds    float64 `json:"p99_seconds"`
	MaxSeconds    float64 `json:"max_seconds"`
}

// outboxStats reports the outbox backlog, the age of its oldest event and
// the recent publish lag, read from the database: any API process answers,
// whichever process runs the active relay.
func (s *Server) outboxStats(c echo.Context) error {
	st, err := relay.ReadStats(c.Request().Context(), s.store.Queries)
	if err != nil {
		return fmt.Errorf("outbox stats: %w", err)
	}
	v := outboxStatsView{
		Backlog: st.Backlog,
		Failing: st.Failing,
		PublishLag: publishLagView{
			WindowSeconds: st.Lag.Window.Seconds(), Events: st.Lag.Events,
			P50Seconds: st.Lag.P50.Seconds(), P99Seconds: st.Lag.P99.Seconds(), MaxSeconds: st.Lag.Max.Seconds(),
		},
	}
	if o := st.Oldest; o != nil {
		v.OldestUnpublished = &oldestUnpublishedView{
			ID: o.ID, OccurredAt: o.OccurredAt.UTC(), RecordedAt: o.RecordedAt.UTC(), AgeSeconds: o.Age.Seconds(), Attempts: o.Attempts, LastError: o.LastError,
		}
	}
	return c.JSON(http.StatusOK, v)
}
