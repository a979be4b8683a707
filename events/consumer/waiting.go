package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// takenLate: a worker that takes a message which waited in its queue more
// than AckWait/takenLate reports it in progress first. The handler's
// deadline is 9/10 of AckWait; a wait up to a hundredth leaves settling
// the rest of the tenth.
const takenLate = 100

// waiting is the set of messages dispatched to a worker's queue and not yet
// taken by the worker, with when each was queued.
//
// JetStream's AckWait runs from the delivery, not from when a worker takes
// the message: behind a slow handler (the inbound one waits for a workflow)
// a queued message would be delivered again while it waits, and again, each
// copy queued behind it and each delivery counting towards MaxDeliver.
// Run therefore tells JetStream that the messages waiting are in progress
// (keepInProgress), which restarts their AckWait, and does so once more
// when a worker takes one that waited more than AckWait/takenLate. Messages
// waiting stay with this process until a worker takes them, rather than
// going to another process after AckWait.
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

// eachOlder calls fn with every message that has waited d or longer,
// holding the lock: a worker cannot take one meanwhile, so fn never acts
// on a message a worker has settled (a progress report after a delayed
// nak would restart the redelivery at AckWait instead of the delay).
func (w *waiting) eachOlder(d time.Duration, fn func(jetstream.Msg)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for m, at := range w.since {
		if time.Since(at) >= d {
			fn(m)
		}
	}
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
		w.eachOlder(interval, c.inProgress)
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
