package relay

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/events"
)

// Defaults of the Config fields.
const (
	DefaultBatchSize         = 1000
	DefaultPollInterval      = 250 * time.Millisecond
	DefaultLockRetryInterval = time.Second
	DefaultAckTimeout        = 10 * time.Second
	DefaultRetention         = 7 * 24 * time.Hour
	DefaultRetentionInterval = 5 * time.Minute
	DefaultStatsInterval     = 30 * time.Second
	DefaultHandoverAfter     = 30 * time.Second
	// DefaultRepublishMargin is what a re-publish window adds to the NATS
	// server's sync interval: the time two of its syncs take (a message is
	// on disk once the first sync that starts after its acknowledgement has
	// finished), the latency of the statement that marks rows published,
	// and small clock steps. See the package documentation.
	DefaultRepublishMargin = 5 * time.Second
)

// lockKey is the advisory lock that elects the active relay. Scaling out
// later means one relay per hash partition of aggregate_id, each with its
// own key (lockKey + partition), never several claimers of one partition.
const lockKey int64 = 0x6f72_6466_6c6f_7701 // "ordflow" + partition 1

const (
	// retentionChunk bounds one retention DELETE, so that it never holds
	// many row locks or runs long between two batches.
	retentionChunk = 1000
	// queryTimeout bounds one statement of the relay's, so that a database
	// that stops answering is noticed like one that hangs up.
	queryTimeout = 30 * time.Second
	// Backoff after a batch in which every publish failed.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
	// maxErrorLen bounds the last_error stored on a row.
	maxErrorLen = 1000
	// streamClockSlack is how much earlier than the re-publish window the
	// relay starts reading the stream, whose timestamps come from the NATS
	// server's clock rather than the database's. A survivor it misses
	// because the clocks are further apart is published again and dropped
	// by the stream's duplicate window.
	streamClockSlack = 5 * time.Second
	// streamReadTimeout bounds the read of which events the stream holds.
	streamReadTimeout = time.Minute
	// shutdownMarkTimeout is how long a statement run while acknowledged
	// rows wait for their mark (the mark, a claim, a failure record) may go
	// on once the relay is stopping: past the stop, or past its own start
	// when it starts after the stop.
	shutdownMarkTimeout = 5 * time.Second
)

// Config holds the relay's dependencies and settings; zero values take the
// defaults above.
type Config struct {
	// DB is the pool the relay takes its one dedicated connection from.
	DB *sql.DB
	// NATS is the connection it publishes on.
	NATS   *nats.Conn
	Logger *slog.Logger

	// BatchSize is the number of rows claimed at a time.
	BatchSize int
	// PollInterval is how often the relay looks for rows nobody kicked it
	// about (written by another process, or left by a failure).
	PollInterval time.Duration
	// LockRetryInterval is how often a standby tries to become active.
	LockRetryInterval time.Duration
	// AckTimeout bounds the wait for one publish's acknowledgement.
	AckTimeout time.Duration
	// Retention is how long published rows are kept before deletion, and
	// RetentionInterval how often the relay looks for such rows.
	Retention         time.Duration
	RetentionInterval time.Duration
	// StatsInterval is how often the active relay logs the outbox
	// statistics (at info while there is a backlog, at debug otherwise).
	StatsInterval time.Duration
	// HandoverAfter is how long the active relay keeps the lock while its
	// NATS connection is down. Past it, the relay gives the lock up and
	// takes it again only once it is connected: a standby that can reach
	// NATS (another host, another route) takes over. A lone relay just
	// resumes when NATS is back.
	HandoverAfter time.Duration

	// RepublishWindow, when positive, covers a NATS server that syncs its
	// file store periodically and so can lose the tail of a stream on a
	// power loss or OS crash: each time the relay becomes the active one,
	// and after each reconnection of its NATS connection, before it
	// publishes anything new, it publishes again, in id order, the rows
	// published within RepublishWindow before the latest publication that
	// the stream no longer holds. Set it to the server's sync interval plus
	// DefaultRepublishMargin; zero, right for a server that syncs every
	// write before acknowledging it, turns it off. The package
	// documentation has the argument.
	RepublishWindow time.Duration

	// AfterPublish, when set, is called after every publish of a batch was
	// acknowledged and before the rows are marked, with the event IDs just
	// published: a fault-injection hook for tests. An error makes the relay
	// behave as if it crashed there: it marks nothing, gives up its lock and
	// Run returns the error.
	AfterPublish func(ctx context.Context, eventIDs []uuid.UUID) error
	// AfterRepublish, when set, is called after every completed re-publish
	// with what it did: a hook for tests.
	AfterRepublish func(Republished)
}

// Republished describes one re-publish (Config.RepublishWindow).
type Republished struct {
	// Since is the start of the window, on the database's clock.
	Since time.Time
	// Window holds the event IDs of the rows published since then, in id
	// order.
	Window []uuid.UUID
	// Sent holds those the stream did not hold, published again: every one
	// of the window when the stream could not be read.
	Sent []uuid.UUID
	// Appended holds those of Sent the stream took as new messages rather
	// than dropping them as duplicates: the events it had lost.
	Appended []uuid.UUID
}

// Relay publishes the outbox. Make one with New and run it with Run.
type Relay struct {
	cfg     Config
	log     *slog.Logger
	js      jetstream.JetStream
	kick    chan struct{}
	leading atomic.Bool
	// started is closed once Run first became active or stood by.
	started   chan struct{}
	startOnce sync.Once
	// epoch is the NATS connection's reconnect count when the relay last
	// completed a re-publish; only the goroutine running Run uses it.
	epoch uint64
}

// New builds a relay. It panics when DB or NATS is missing: a wiring
// mistake in main, not a runtime condition.
func New(cfg Config) (*Relay, error) {
	if cfg.DB == nil || cfg.NATS == nil {
		panic("relay: Config.DB and Config.NATS are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.LockRetryInterval <= 0 {
		cfg.LockRetryInterval = DefaultLockRetryInterval
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.RetentionInterval <= 0 {
		cfg.RetentionInterval = DefaultRetentionInterval
	}
	if cfg.StatsInterval <= 0 {
		cfg.StatsInterval = DefaultStatsInterval
	}
	if cfg.HandoverAfter <= 0 {
		cfg.HandoverAfter = DefaultHandoverAfter
	}
	// A wave is at most one batch, so MaxPending never stalls a send; the
	// library's ack timeout resolves every future even when no answer ever
	// comes.
	js, err := jetstream.New(cfg.NATS,
		jetstream.WithPublishAsyncMaxPending(cfg.BatchSize),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("relay: jetstream: %w", err)
	}
	r := &Relay{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "relay"),
		js:      js,
		kick:    make(chan struct{}, 1),
		started: make(chan struct{}),
	}
	if cfg.RepublishWindow > 0 && cfg.NATS.Opts.ReconnectBufSize >= 0 {
		// See "A NATS server that restarts under a running relay" in the
		// package documentation.
		r.log.Warn("the relay's NATS connection buffers publishes while it reconnects; " +
			"connect with nats.ReconnectBufSize(-1) so that nothing reaches a restarted server before the relay has re-published what it lost")
	}
	return r, nil
}

// Kick wakes the relay to look for new rows now rather than at its next
// poll. It never blocks, and kicks that arrive while one is pending
// coalesce into one. Wire it to activities.Activities.Committed.
func (r *Relay) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Leading reports whether this relay is the active one.
func (r *Relay) Leading() bool { return r.leading.Load() }

// Started is closed once Run has started: it took the lock and is the
// active relay, or found another relay holding it and stands by. Until
// then Run is waiting for its NATS connection or its database.
func (r *Relay) Started() <-chan struct{} { return r.started }

// markStarted closes Started, once.
func (r *Relay) markStarted() { r.startOnce.Do(func() { close(r.started) }) }

// errCrash marks the error of an AfterPublish hook: Run returns it.
type errCrash struct{ err error }

func (e errCrash) Error() string { return "after publish: " + e.err.Error() }
func (e errCrash) Unwrap() error { return e.err }

// errCutOff: the relay's NATS connection was down for HandoverAfter.
type errCutOff struct{ since time.Time }

func (e errCutOff) Error() string {
	return fmt.Sprintf("nats unreachable since %s", e.since.Format(time.RFC3339))
}

// Run stands by until this relay holds the lock, then publishes until ctx
// is done, it loses its database session, or its NATS connection has been
// down for HandoverAfter, in which case it stands by again. It returns nil when ctx is done, and the hook's error when
// AfterPublish fails. Started tells when it is active or standing by.
func (r *Relay) Run(ctx context.Context) error {
	for {
		conn, err := r.acquire(ctx)
		if err != nil {
			return nil // ctx is done
		}
		r.leading.Store(true)
		r.markStarted()
		r.log.Info("relay active: publishing the outbox")
		err = r.lead(ctx, conn)
		r.leading.Store(false)
		discard(conn)
		if crash, ok := errors.AsType[errCrash](err); ok {
			r.log.Warn("relay stopped by its after-publish hook", "err", crash.err)
			return crash
		}
		if ctx.Err() != nil {
			r.log.Info("relay stopped")
			return nil
		}
		if cut, ok := errors.AsType[errCutOff](err); ok {
			r.log.Warn("relay cut off from NATS: giving up the lock to a relay that can publish; taking it again once connected",
				"down_for", time.Since(cut.since).Round(time.Second))
			continue // acquire waits for the connection
		}
		r.log.Warn("relay lost its database session: standing by", "err", err)
		if !sleep(ctx, r.cfg.LockRetryInterval) {
			return nil
		}
	}
}

// acquire returns a connection holding the relay lock, trying every
// LockRetryInterval until ctx is done. It tries only while its NATS
// connection is up: a relay that cannot publish leaves the lock to one
// that can.
func (r *Relay) acquire(ctx context.Context) (*sql.Conn, error) {
	var conn *sql.Conn
	standing, waiting := false, false
	nextStats := time.Now()
	for {
		var locked bool
		var err error
		connected := r.cfg.NATS.IsConnected()
		if connected && conn == nil {
			conn, err = r.cfg.DB.Conn(ctx)
		}
		if connected && err == nil {
			locked, err = tryLock(ctx, conn)
		}
		switch {
		case locked:
			return conn, nil
		case ctx.Err() != nil:
		case !connected:
			if !waiting {
				r.log.Warn("relay waiting for its NATS connection before it takes the lock", "status", r.cfg.NATS.Status().String())
				waiting, standing = true, false
			}
			if now := time.Now(); !now.Before(nextStats) {
				r.logStats(ctx, db.New(r.cfg.DB))
				nextStats = now.Add(r.cfg.StatsInterval)
			}
		case err != nil:
			r.log.Warn("relay cannot reach the database; retrying", "err", err)
			if conn != nil {
				discard(conn)
				conn = nil
			}
		case !standing:
			r.markStarted()
			r.log.Info("relay standing by: another relay is active", "retry_every", r.cfg.LockRetryInterval)
			standing, waiting = true, false
		}
		if ctx.Err() != nil || !sleep(ctx, r.cfg.LockRetryInterval) {
			if conn != nil {
				discard(conn)
			}
			return nil, ctx.Err()
		}
	}
}

// tryLock takes the relay lock on conn's session if it is free, and then
// shortens the session's TCP keepalives and makes its commits asynchronous
// (see SetRelaySessionAsyncCommit in db/queries/outbox.sql).
func tryLock(ctx context.Context, conn *sql.Conn) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	q := db.New(conn)
	locked, err := q.TryRelayLock(ctx, lockKey)
	if err != nil || !locked {
		return false, err
	}
	if err := q.SetRelaySessionKeepalives(ctx); err != nil {
		return false, err // the caller discards the session, and the lock with it
	}
	// The session is the relay's alone and is discarded, never pooled,
	// when the relay stops leading: the setting goes with it.
	if err := q.SetRelaySessionAsyncCommit(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// lead publishes while conn, which holds the lock, works. It returns nil
// when ctx is done, an errCrash from the hook, or the database error that
// ended the session.
func (r *Relay) lead(ctx context.Context, conn *sql.Conn) error {
	q := db.New(conn)
	poll := time.NewTimer(0)
	defer poll.Stop()
	backoff := time.Duration(0)
	nextRetention := time.Now()
	nextStats := time.Now().Add(r.cfg.StatsInterval)
	republished := false    // in this term as the active relay
	var downSince time.Time // when NATS went, while it is gone
	// pending: more rows waited after the last batch, whose acknowledged
	// rows are to be marked while the next one is sent. Before any other
	// statement, and before the relay stops, they are marked: a stop
	// that cancels a statement ends the session (pgx closes it), and
	// with it the chance to mark them.
	var pending unmarked
	flush := func() error {
		err := r.mark(ctx, q, pending)
		pending = unmarked{}
		return err
	}
	for {
		if ctx.Err() != nil {
			return flush()
		}
		// Read once: the flush must come before whichever branch runs.
		connected := r.cfg.NATS.IsConnected()
		republishDue := r.cfg.RepublishWindow > 0 && (!republished || r.reconnects() != r.epoch)
		if !connected || republishDue {
			if err := flush(); err != nil {
				return err
			}
		}
		if !connected {
			// Claiming now would only record failures. Keep checking the
			// session, so that a relay that lost its lock while NATS was
			// down steps aside for one that can publish, and keep telling
			// how the backlog grows; past HandoverAfter, give the lock up.
			if downSince.IsZero() {
				downSince = time.Now()
			} else if time.Since(downSince) >= r.cfg.HandoverAfter {
				return errCutOff{since: downSince}
			}
			if err := ping(ctx, conn); err != nil {
				return err
			}
			if now := time.Now(); !now.Before(nextStats) {
				r.log.Warn("nats is unreachable: publishing waits", "status", r.cfg.NATS.Status().String())
				r.logStats(ctx, q)
				nextStats = now.Add(r.cfg.StatsInterval)
			}
			sleep(ctx, r.cfg.PollInterval)
			continue
		}
		downSince = time.Time{}
		if republishDue {
			// Before anything new: what the stream may have lost.
			epoch := r.reconnects()
			err := r.republish(ctx, q, epoch)
			if ctx.Err() != nil {
				return nil
			}
			if _, ok := errors.AsType[errRepublish](err); ok {
				backoff = min(max(2*backoff, minBackoff), maxBackoff)
				r.log.Warn("re-publish failed; publishing nothing new until it succeeds", "err", err, "retry_in", backoff)
				if !sleep(ctx, backoff) {
					return nil
				}
				continue
			}
			if err != nil {
				return err
			}
			// A reconnection during the re-publish shows at the next
			// iteration, which re-publishes again.
			r.epoch, republished, backoff = epoch, true, 0
			continue
		}
		// A kick that arrives from here on wakes the next iteration.
		select {
		case <-r.kick:
		default:
		}
		res, next, err := r.batch(ctx, q, pending)
		pending = next
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		now := time.Now()
		if !now.Before(nextRetention) || !now.Before(nextStats) {
			if err := flush(); err != nil {
				return err
			}
		}
		if !now.Before(nextRetention) {
			n, err := r.retain(ctx, q)
			if err != nil {
				return err
			}
			if n < retentionChunk {
				nextRetention = now.Add(r.cfg.RetentionInterval)
			}
		}
		if !now.Before(nextStats) {
			r.logStats(ctx, q)
			nextStats = now.Add(r.cfg.StatsInterval)
		}
		switch {
		case res.reconnected:
			continue // re-publish first
		case res.failed > 0 && res.published == 0:
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			if !sleep(ctx, backoff) {
				return nil
			}
			continue
		case res.failed > 0 || res.claimed == r.cfg.BatchSize:
			// More may be waiting: the rest of a backlog, or the other
			// orders' successors of the rows that failed.
			backoff = 0
			continue
		}
		backoff = 0
		poll.Reset(r.cfg.PollInterval)
		select {
		case <-ctx.Done():
			return flush() // pending when a kick came during the batch
		case <-r.kick:
		case <-poll.C:
		}
	}
}

// batchResult counts what one batch did.
type batchResult struct {
	claimed, published, failed int
	// reconnected: the NATS connection reconnected during the batch, which
	// stopped sending; the rows not sent stay unpublished.
	reconnected bool
}

// row is one row on its way out.
type row struct {
	db.ClaimOutboxBatchRow
	msg *nats.Msg
	err error // non-nil: could not be encoded, or its publish failed
	// duplicate: the stream acknowledged it as a copy of a message it
	// holds.
	duplicate bool
}

func newRow(c db.ClaimOutboxBatchRow) *row {
	rw := &row{ClaimOutboxBatchRow: c}
	rw.msg, rw.err = message(c)
	return rw
}

// unmarked holds the rows of a batch that the stream acknowledged and
// the relay has not marked published yet.
type unmarked struct {
	ids []int64
	// lastAck is when the last acknowledgement of one of them was read.
	lastAck time.Time
}

// batch claims up to BatchSize rows and publishes them (send). prev holds
// the acknowledged rows of the previous batch when more rows were waiting
// after it (it was full, or a writer kicked the relay while it was sent):
// the claim leaves them out, and their mark runs on the session right
// after the claim, while this batch is sent, so that a backlog drains at
// the pace of claim + max(send, mark) rather than claim + send + mark. batch resolves
// prev whatever happens: marked, or left unpublished when the session
// fails (the next active relay sends those rows again and the stream
// drops them as duplicates, as after a crash between publish and mark); a
// failed mark of prev also leaves this batch's rows unmarked and its
// failures unrecorded, the session being gone. batch returns this batch's
// acknowledged rows unmarked, for the next batch to mark, when more rows
// wait after it too; otherwise it marks them before it returns.
func (r *Relay) batch(ctx context.Context, q *db.Queries, prev unmarked) (batchResult, unmarked, error) {
	var res batchResult
	var qctx context.Context
	var cancel context.CancelFunc
	if len(prev.ids) > 0 {
		qctx, cancel = outliving(ctx) // a stop must not end the session before prev's mark
	} else {
		qctx, cancel = context.WithTimeout(ctx, queryTimeout)
	}
	claimed, err := q.ClaimOutboxBatch(qctx, db.ClaimOutboxBatchParams{Marking: prev.ids, MaxRows: int32(r.cfg.BatchSize)})
	cancel()
	if err != nil {
		// When the session failed, the mark fails too.
		return res, unmarked{}, errors.Join(fmt.Errorf("claim outbox rows: %w", err), r.mark(ctx, q, prev))
	}
	res.claimed = len(claimed)
	if ctx.Err() != nil {
		// Stopped during the claim: send nothing more.
		return res, unmarked{}, r.mark(ctx, q, prev)
	}
	// The session is free until the next statement: mark prev meanwhile.
	marked := make(chan error, 1)
	if len(prev.ids) == 0 {
		marked <- nil
	} else {
		go func() { marked <- r.mark(ctx, q, prev) }()
	}
	if len(claimed) == 0 {
		return res, unmarked{}, <-marked
	}
	rows := make([]*row, len(claimed))
	for i, c := range claimed {
		rows[i] = newRow(c)
	}
	out := r.send(ctx, rows, r.epoch)
	published, failed := out.published, out.failed
	res.published, res.failed, res.reconnected = len(published), len(failed), out.reconnected
	if err := <-marked; err != nil {
		return res, unmarked{}, err
	}

	acked := unmarked{ids: make([]int64, len(published)), lastAck: out.lastAck}
	eventIDs := make([]uuid.UUID, len(published))
	for i, rw := range published {
		acked.ids[i], eventIDs[i] = rw.ID, rw.EventID
	}
	if !out.stopped && r.cfg.AfterPublish != nil && len(published) > 0 {
		if err := r.cfg.AfterPublish(ctx, eventIDs); err != nil {
			return res, unmarked{}, errCrash{err}
		}
	}
	if len(failed) > 0 {
		fids := make([]int64, len(failed))
		errs := make([]string, len(failed))
		for i, rw := range failed {
			fids[i], errs[i] = rw.ID, truncate(rw.err.Error(), maxErrorLen)
		}
		// Recorded even when the relay is stopping, and on a context that
		// does not end the session before this batch's mark.
		qctx, cancel := outliving(ctx)
		_, err := q.RecordOutboxFailures(qctx, db.RecordOutboxFailuresParams{Ids: fids, Errors: errs})
		cancel()
		if err != nil {
			return res, unmarked{}, fmt.Errorf("record %d outbox failures: %w", len(fids), err)
		}
		first := failed[0]
		r.log.Warn("outbox publish failed; the orders concerned wait for a retry",
			"failed", len(failed), "published", len(published), "orders_blocked", out.blocked,
			"first_id", first.ID, "first_event_id", first.EventID, "first_event_type", first.EventType,
			"first_aggregate_id", first.AggregateID, "err", first.err)
	}
	r.log.Debug("outbox batch", "claimed", res.claimed, "published", res.published, "failed", res.failed, "waves", out.waves)
	// More rows wait when the batch was full or a writer kicked meanwhile:
	// the next claim comes at once, so this mark can run beside it.
	more := res.claimed == r.cfg.BatchSize || len(r.kick) > 0
	if more && !out.stopped && !out.reconnected {
		return res, acked, nil // marked while the next batch is sent
	}
	return res, unmarked{}, r.mark(ctx, q, acked)
}

// mark marks rows published, with published_at = when their last
// acknowledgement was read, on the database's clock; see the package
// documentation. The rows are in the stream, so the mark goes on when ctx
// ends, for at most shutdownMarkTimeout more (outliving): a restart then
// does not send them again.
func (r *Relay) mark(ctx context.Context, q *db.Queries, u unmarked) error {
	if len(u.ids) == 0 {
		return nil
	}
	mctx, cancel := outliving(ctx)
	defer cancel()
	_, err := q.MarkOutboxPublished(mctx, db.MarkOutboxPublishedParams{
		AckedAgoSeconds: time.Since(u.lastAck).Seconds(), Ids: u.ids,
	})
	if err != nil {
		return fmt.Errorf("mark %d outbox rows published: %w", len(u.ids), err)
	}
	return nil
}

// outliving returns a context for a statement that a stop must not cancel
// while acknowledged rows wait for their mark: pgx closes a connection
// whose statement is cancelled, and the relay's session with it. It ends
// after queryTimeout, or shutdownMarkTimeout after ctx ends (after the call
// when ctx has already ended), whichever comes first.
func outliving(ctx context.Context) (context.Context, context.CancelFunc) {
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), queryTimeout)
	var (
		mu    sync.Mutex
		timer *time.Timer
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		timer = time.AfterFunc(shutdownMarkTimeout, cancel)
	})
	return octx, func() {
		stop()
		mu.Lock()
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancel()
	}
}

// sent is what send did with its rows.
type sent struct {
	published []*row // acknowledged, in acknowledgement order
	failed    []*row // refused, unanswered or not encodable
	// lastAck is when the last acknowledgement of a published row was
	// read.
	lastAck time.Time
	// blocked is the number of aggregates a failure held back; waves the
	// number of waves sent.
	blocked, waves int
	// stopped: ctx ended while waiting for acknowledgements. reconnected:
	// the NATS connection reconnected, so send stopped before a wave.
	stopped, reconnected bool
}

// send publishes rows, given in id order, in waves (see the package
// documentation for why): wave k holds the k-th row of every aggregate,
// sent asynchronously, and every acknowledgement of a wave is awaited
// before the next is sent. A row that fails holds back the rest of its
// aggregate. With a re-publish window, send stops before a wave when the
// connection's reconnect count is no longer epoch, the count when the last
// re-publish began.
func (r *Relay) send(ctx context.Context, rows []*row, epoch uint64) (out sent) {
	rank := make(map[string]int, len(rows))
	var waves [][]*row
	for _, rw := range rows {
		k := rank[rw.AggregateID]
		rank[rw.AggregateID] = k + 1
		if k == len(waves) {
			waves = append(waves, nil)
		}
		waves[k] = append(waves[k], rw)
	}

	blocked := make(map[string]bool)
	fail := func(rw *row, err error) {
		rw.err = err
		blocked[rw.AggregateID] = true
		out.failed = append(out.failed, rw)
	}
	defer func() { out.blocked = len(blocked) }()
	for _, wave := range waves {
		if ctx.Err() != nil {
			out.stopped = true
			return out
		}
		if r.cfg.RepublishWindow > 0 && r.reconnects() != epoch {
			// The server may be a restarted one that lost the tail of
			// the stream: nothing more before the re-publish.
			out.reconnected = true
			return out
		}
		type inflight struct {
			rw  *row
			ack jetstream.PubAckFuture
		}
		pending := make([]inflight, 0, len(wave))
		for _, rw := range wave {
			if blocked[rw.AggregateID] {
				continue // a predecessor in this batch failed
			}
			if rw.err != nil {
				fail(rw, rw.err)
				continue
			}
			f, err := r.js.PublishMsgAsync(rw.msg)
			if err != nil {
				fail(rw, fmt.Errorf("publish: %w", err))
				continue
			}
			pending = append(pending, inflight{rw, f})
		}
		if len(pending) == 0 {
			break // every aggregate left is blocked
		}
		out.waves++
		// The library's own timeout should resolve every future first;
		// the deadline only keeps a future that never resolves from
		// holding the relay. Once it has passed, the futures left are
		// read without waiting, so an acknowledged one still counts.
		deadline := time.NewTimer(r.cfg.AckTimeout + time.Second)
		expired := false
		for _, s := range pending {
			var (
				ack      *jetstream.PubAck
				err      error
				resolved = true
			)
			select {
			case ack = <-s.ack.Ok():
			case err = <-s.ack.Err():
			default:
				resolved = false
			}
			if !resolved && !expired {
				select {
				case ack = <-s.ack.Ok():
					resolved = true
				case err = <-s.ack.Err():
					resolved = true
				case <-deadline.C:
					expired = true
				case <-ctx.Done():
					out.stopped = true
				}
			}
			if out.stopped {
				break
			}
			switch {
			case !resolved:
				fail(s.rw, fmt.Errorf("publish: no acknowledgement within %s", r.cfg.AckTimeout))
			case err != nil:
				fail(s.rw, fmt.Errorf("publish: %w", err))
			default:
				s.rw.duplicate = ack.Duplicate
				out.published = append(out.published, s.rw)
				out.lastAck = time.Now()
			}
		}
		deadline.Stop()
		if out.stopped {
			break
		}
	}
	return out
}

// reconnects is the NATS connection's reconnect count.
func (r *Relay) reconnects() uint64 { return r.cfg.NATS.Stats().Reconnects }

// message encodes a row as its CloudEvent.
func message(c db.ClaimOutboxBatchRow) (*nats.Msg, error) {
	env := events.Envelope{
		ID:       c.EventID.String(),
		Type:     events.CEType(c.EventType),
		Source:   source(c.AggregateType),
		Subject:  c.AggregateID,
		Time:     c.OccurredAt,
		Sequence: c.AggregateVersion,
		Data:     c.Payload,
	}
	if c.Headers.Valid {
		// Extra attributes the writer recorded; today only the W3C trace
		// context.
		var h map[string]string
		if err := json.Unmarshal(c.Headers.RawMessage, &h); err != nil {
			return nil, fmt.Errorf("outbox headers are not a JSON object of strings: %w", err)
		}
		env.Traceparent = h[events.HeaderTraceparent]
	}
	return env.Msg(), nil
}

// source is the CloudEvents source of an aggregate type's events.
func source(aggregateType string) string {
	if aggregateType == events.AggregateOrder {
		return events.SourceOrders
	}
	return "/orderflow/" + aggregateType
}

// retain deletes one chunk of rows published before the retention period
// and returns how many it deleted.
func (r *Relay) retain(ctx context.Context, q *db.Queries) (int64, error) {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	n, err := q.DeletePublishedOutboxEvents(qctx, db.DeletePublishedOutboxEventsParams{
		PublishedBefore: time.Now().Add(-r.cfg.Retention), MaxRows: retentionChunk,
	})
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil
		}
		return 0, fmt.Errorf("delete published outbox rows: %w", err)
	}
	if n > 0 {
		r.log.Debug("deleted published outbox rows past retention", "rows", n, "retention", r.cfg.Retention)
	}
	return n, nil
}

// logStats logs the outbox statistics: at info when there is a backlog (the
// oldest row waits longer than a second), at debug otherwise.
func (r *Relay) logStats(ctx context.Context, q *db.Queries) {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	s, err := ReadStats(qctx, q)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("outbox statistics", "err", err)
		}
		return
	}
	level := slog.LevelDebug
	if s.OldestAge() >= time.Second {
		level = slog.LevelInfo
	}
	attrs := []any{
		"backlog", s.Backlog, "failing", s.Failing, "oldest_age", s.OldestAge().Round(time.Millisecond),
		"lag_p50", s.Lag.P50, "lag_p99", s.Lag.P99, "lag_events", s.Lag.Events,
	}
	if s.Oldest != nil && s.Oldest.LastError != "" {
		attrs = append(attrs, "oldest_attempts", s.Oldest.Attempts, "oldest_last_error", s.Oldest.LastError)
	}
	r.log.Log(ctx, level, "outbox", attrs...)
}

// ping checks that the session still answers.
func ping(ctx context.Context, conn *sql.Conn) error {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	if err := conn.PingContext(qctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// discard closes the connection's session instead of returning it to the
// pool: a pooled session would keep the lock, unused, forever. Ending the
// session releases the lock at once.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
