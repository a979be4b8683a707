package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/db"
)

// republishMarkChunk bounds the rows one statement marks re-published.
const republishMarkChunk = 10_000

// errRepublish marks a re-publish that failed on the NATS side (a publish
// refused or unanswered, a reconnection): the relay retries it, publishing
// nothing new meanwhile. Database errors are returned as they are: they end
// the relay's term.
type errRepublish struct{ err error }

func (e errRepublish) Error() string { return "re-publish: " + e.err.Error() }
func (e errRepublish) Unwrap() error { return e.err }

// republish publishes again, in id order and in waves, the rows published
// within RepublishWindow before the latest publication that the stream no
// longer holds (see the package documentation). epoch is the NATS
// connection's reconnect count when it began: it stops when that changes.
func (r *Relay) republish(ctx context.Context, q *db.Queries, epoch uint64) error {
	began := time.Now()
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	latest, err := q.LatestOutboxPublication(qctx)
	cancel()
	if err != nil {
		return fmt.Errorf("latest outbox publication: %w", err)
	}
	if !latest.Found {
		r.afterRepublish(Republished{})
		return nil
	}
	res := Republished{Since: latest.Latest.Add(-r.cfg.RepublishWindow)}
	qctx, cancel = context.WithTimeout(ctx, queryTimeout)
	bounds, err := q.OutboxPublishedSince(qctx, res.Since)
	cancel()
	if err != nil {
		return fmt.Errorf("outbox rows published since %s: %w", res.Since, err)
	}

	// Which events the streams hold, read once per aggregate type (in
	// practice one type, one stream), when its first row comes up. nil:
	// the server refused the read, so the whole window goes out again and
	// the duplicate window drops what the stream holds.
	held := map[string]map[string]bool{}
	holds := func(rw *row) (bool, error) {
		ids, ok := held[rw.AggregateType]
		if !ok {
			var err error
			if ids, err = r.streamHolds(ctx, rw.msg.Subject, res.Since.Add(-streamClockSlack)); err != nil {
				return false, err
			}
			held[rw.AggregateType] = ids
		}
		return ids[rw.EventID.String()], nil
	}

	var appended []int64 // ids of the rows the stream took as new
	var lastAck time.Time
	after := bounds.FirstID - 1
	for after < bounds.LastID {
		qctx, cancel := context.WithTimeout(ctx, queryTimeout)
		page, err := q.ListOutboxPublishedSince(qctx, db.ListOutboxPublishedSinceParams{
			Since: res.Since, AfterID: after, LastID: bounds.LastID, MaxRows: int32(r.cfg.BatchSize),
		})
		cancel()
		if err != nil {
			return fmt.Errorf("list outbox rows published since %s: %w", res.Since, err)
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].ID
		var rows []*row
		for _, p := range page {
			rw := newRow(db.ClaimOutboxBatchRow(p))
			res.Window = append(res.Window, rw.EventID)
			if rw.err == nil {
				h, err := holds(rw)
				if err != nil {
					return errRepublish{err}
				}
				if h {
					continue
				}
			}
			rows = append(rows, rw)
		}
		if len(rows) == 0 {
			continue
		}
		out := r.send(ctx, rows, epoch)
		for _, rw := range out.published {
			res.Sent = append(res.Sent, rw.EventID)
			if !rw.duplicate {
				res.Appended = append(res.Appended, rw.EventID)
				appended = append(appended, rw.ID)
			}
		}
		if len(out.published) > 0 {
			lastAck = out.lastAck
		}
		switch {
		case out.stopped:
			return ctx.Err()
		case out.reconnected:
			return errRepublish{errors.New("the NATS connection reconnected")}
		case len(out.failed) > 0:
			first := out.failed[0]
			return errRepublish{fmt.Errorf("%d of %d events failed, first %s (%s of %s %s): %w",
				len(out.failed), len(rows), first.EventID, first.EventType, first.AggregateType, first.AggregateID, first.err)}
		}
		// A page's rows are all acknowledged before the next page's are
		// sent, so per-aggregate order holds across pages.
	}

	// Until the server's next sync the rows it took as new are its newest
	// messages, so a crash now must find them in its window: they get the
	// re-publish's last acknowledgement as published_at. Only now, once
	// every lost row is back: moving the window while a re-publish is
	// retried would leave the rows it had not reached yet behind.
	for len(appended) > 0 {
		chunk := appended[:min(len(appended), republishMarkChunk)]
		appended = appended[len(chunk):]
		qctx, cancel := context.WithTimeout(ctx, queryTimeout)
		_, err := q.MarkOutboxRepublished(qctx, db.MarkOutboxRepublishedParams{
			AckedAgoSeconds: time.Since(lastAck).Seconds(), Ids: chunk,
		})
		cancel()
		if err != nil {
			return fmt.Errorf("mark %d re-published outbox rows: %w", len(chunk), err)
		}
	}

	attrs := []any{
		"since", res.Since, "window", len(res.Window), "sent", len(res.Sent), "appended", len(res.Appended),
		"took", time.Since(began).Round(time.Millisecond),
	}
	switch {
	case len(res.Appended) > 0:
		r.log.Warn("re-published events the stream had lost (a NATS power loss or OS crash?)", attrs...)
	case len(res.Window) > 0:
		r.log.Info("re-publish window checked: the stream holds every event", attrs...)
	}
	r.afterRepublish(res)
	return nil
}

func (r *Relay) afterRepublish(res Republished) {
	if r.cfg.AfterRepublish != nil {
		r.cfg.AfterRepublish(res)
	}
}

// streamHolds returns the Nats-Msg-Id of every message from start on of
// the stream that captures subject. When the server refuses to say (a
// relay without the permissions, say), it logs why and returns nil: the
// caller then sends the whole window again. Other errors (NATS down, a
// timeout) are returned, to be retried.
func (r *Relay) streamHolds(ctx context.Context, subject string, start time.Time) (map[string]bool, error) {
	lctx, cancel := context.WithTimeout(ctx, queryTimeout)
	stream, err := r.js.StreamNameBySubject(lctx, subject)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("find the stream of %s: %w", subject, err)
	}
	ids, err := r.heldSince(ctx, stream, start)
	if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok || errors.Is(err, nats.ErrPermissionViolation) {
		r.log.Warn("re-publish: the server refuses to show which events the stream holds; publishing the whole window again, its duplicate window drops the copies",
			"stream", stream, "err", err, "api_error", apiErr)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	return ids, nil
}

// heldSince returns the Nats-Msg-Id of every message stream holds from
// start (on the NATS server's clock) to its end, read with a headers-only
// ordered consumer.
func (r *Relay) heldSince(ctx context.Context, stream string, start time.Time) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, streamReadTimeout)
	defer cancel()
	s, err := r.js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	held := map[string]bool{}
	if info.State.Msgs == 0 || info.State.LastTime.Before(start) {
		return held, nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start, HeadersOnly: true,
	})
	if err != nil {
		return nil, err
	}
	it, err := c.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	// The stream's last sequence may be one it lost (a gap the file store
	// recovered as deleted), so the end is the consumer's count of
	// messages, not the stream's last sequence.
	ci, err := c.Info(ctx)
	if err != nil {
		return nil, err
	}
	total := ci.Delivered.Consumer + ci.NumPending
	for n := uint64(0); n < total; n++ {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, err
		}
		if id := m.Headers().Get(nats.MsgIdHdr); id != "" {
			held[id] = true
		}
		if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
			break
		}
	}
	return held, nil
}
