package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// waiting is the set of messages dispatched to a worker's queue and not yet
// taken by the worker, with when each was queued.
//
// JetStream's AckWait runs from the delivery, not from when a worker takes
// the message: behind a slow handler (the inbound one waits for a workflow)
// a queued message would be delivered again while it waits, and again, each
// copy queued behind it and each delivery counting towards MaxDeliver.
// Run therefore tells JetStream that the messages waiting are in progress
// (keepInProgress), which restarts their AckWait, and does so once more
// when a worker takes one that waited, so that its handler has the whole
// AckWait.
type waiting struct {
	mu    sync.Mutex
	since map[jetstream.Msg]time.Time
}

func newWaiting() *waiting { return &waiting{since: map[jetstream.Msg]time.Time{}} }

// add records that m was queued now.
func (w *waiting) add(m jetstream.Msg) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.since[m] = time.Now()
}

// take removes m and returns how long it waited.
func (w *waiting) take(m jetstream.Msg) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.since[m]
	delete(w.since, m)
	if !ok {
		return 0
	}
	return time.Since(at)
}

// older returns the messages that have waited d or longer.
func (w *waiting) older(d time.Duration) []jetstream.Msg {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ms []jetstream.Msg
	for m, at := range w.since {
		if time.Since(at) >= d {
			ms = append(ms, m)
		}
	}
	return ms
}

// keepInProgress tells JetStream, every interval until ctx is done, that
// the messages that have waited interval or longer are in progress.
func (c *Consumer) keepInProgress(ctx context.Context, w *waiting, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, m := range w.older(interval) {
			c.inProgress(m)
		}
	}
}

// inProgress restarts m's AckWait. A failure (the connection is down) is
// not an error of the message: it is then delivered again, as it would be
// without.
func (c *Consumer) inProgress(m jetstream.Msg) {
	if err := m.InProgress(); err != nil {
		c.log.Debug("tell jetstream a queued message is in progress", "subject", m.Subject(), "err", err)
	}
}
