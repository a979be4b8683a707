package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/events"
)

// TestOutboxStats: GET /v1/outbox/stats reads the backlog from the
// database.
func TestOutboxStats(t *testing.T) {
	f := newFixture(t)
	type stats struct {
		Backlog           int64 `json:"backlog"`
		Failing           int64 `json:"failing"`
		OldestUnpublished *struct {
			ID         int64     `json:"id"`
			OccurredAt time.Time `json:"occurred_at"`
			RecordedAt time.Time `json:"recorded_at"`
			AgeSeconds float64   `json:"age_seconds"`
			Attempts   int32     `json:"attempts"`
		} `json:"oldest_unpublished"`
		PublishLag struct {
			WindowSeconds float64 `json:"window_seconds"`
			Events        int64   `json:"events"`
		} `json:"publish_lag"`
	}
	get := func() stats {
		t.Helper()
		rec := f.do(t, http.MethodGet, "/v1/outbox/stats", "", nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d; body: %s", rec.Code, rec.Body)
		}
		var s stats
		if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
			t.Fatalf("decode %s: %v", rec.Body, err)
		}
		return s
	}
	if s := get(); s.Backlog != 0 || s.OldestUnpublished != nil || s.PublishLag.WindowSeconds != 300 {
		t.Fatalf("empty outbox: %+v", s)
	}

	occurred := time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)
	order := uuid.NewString()
	for v := int64(1); v <= 2; v++ {
		if _, err := f.store.InsertOutboxEvent(context.Background(), db.InsertOutboxEventParams{
			EventID: uuid.New(), AggregateType: events.AggregateOrder, AggregateID: order, AggregateVersion: v,
			EventType: events.OrderPlaced, Payload: []byte(`{}`), OccurredAt: occurred,
		}); err != nil {
			t.Fatal(err)
		}
	}
	s := get()
	if s.Backlog != 2 || s.Failing != 0 || s.OldestUnpublished == nil {
		t.Fatalf("two unpublished events: %+v", s)
	}
	// The event happened a minute ago, its row was written just now: the
	// row's age in the queue counts from the write.
	if o := s.OldestUnpublished; !o.OccurredAt.Equal(occurred) || !o.RecordedAt.After(occurred) || o.AgeSeconds >= 60 || o.Attempts != 0 {
		t.Errorf("oldest = %+v, want the first row, which occurred a minute ago and was recorded since", *o)
	}
}
