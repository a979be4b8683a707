package consumer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/events"
)

// Handler takes one event inside the consumer's transaction: it writes the
// context's own tables through tx, which also holds the event's inbox row,
// so its writes commit exactly once. It must not commit or roll back tx. An
// error rolls everything back; see the package documentation for how each
// kind of error is handled.
type Handler func(ctx context.Context, tx *sql.Tx, env events.Envelope) error

// Defaults of Config.
const (
	DefaultConcurrency   = 4
	DefaultMaxDeliver    = 20
	DefaultAckWait       = 30 * time.Second
	DefaultMaxAckPending = 1000
	DefaultAdoptAfter    = 3
)

// DefaultBackoff is the retry schedule: the delay before the second
// delivery, the third, and so on, the last repeated. With DefaultMaxDeliver
// a message is retried for a little over an hour before it is
// dead-lettered, so a dependency that is down for less than that loses
// nothing.
var DefaultBackoff = []time.Duration{
	200 * time.Millisecond, time.Second, 5 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute,
}

// Config describes one consumer.
type Config struct {
	// Name is the durable consumer's name on Stream and on the redrive
	// stream, and the consumer's key in the inbox: letters, digits, "-" and
	// "_" only. Renaming a consumer starts it afresh.
	Name string
	// Stream is the stream to consume, e.g. events.OrderStream.
	Stream string
	// Subjects filters the stream; empty means every subject. An Ordered
	// consumer must leave it empty.
	Subjects []string
	// Ordered turns on the per-aggregate ce-sequence check.
	Ordered bool
	// AdoptAfter is how many deliveries an ordered consumer holds back an
	// aggregate's first event when its sequence is above 1 and nothing
	// earlier of the aggregate is in the stream, in case the producer
	// published its predecessors out of order; then it adopts the
	// aggregate there. Default DefaultAdoptAfter.
	AdoptAfter int
	// InboxRetention is how long the consumer's inbox rows are kept, and
	// for an ordered consumer the rows of aggregates idle as long: past
	// it, no copy of their event can come back. Zero derives it from the
	// stream when the consumer prunes: the stream's MaxAge, plus the
	// redrive stream's (a replay's or a redrive's copies, made while the
	// stream holds the event, wait there), plus a day: 38 days
	// with the defaults. A stream that keeps its events forever keeps the
	// inbox forever too, and so does a negative value. Run prunes an
	// hour apart, the first a minute after it starts; see Prune.
	InboxRetention time.Duration
	// Handler takes each event.
	Handler Handler
	// DB holds the inbox tables and the context's own.
	DB *sql.DB
	// JetStream is the connection to the bus.
	JetStream jetstream.JetStream
	Logger    *slog.Logger

	// Concurrency is how many events are taken at once; one aggregate's
	// events always go to the same worker. Default DefaultConcurrency.
	Concurrency int
	// MaxDeliver bounds deliveries of one message before it is
	// dead-lettered. Default DefaultMaxDeliver.
	MaxDeliver int
	// Backoff is the retry schedule after a transient error or a hold-back
	// (see DefaultBackoff); JetStream's own BackOff, used when a message is
	// not acknowledged at all (a crashed process), follows it too, never
	// below AckWait.
	Backoff []time.Duration
	// AckWait is how long one delivery may take before JetStream delivers
	// it again; the handler's context expires a little before. Default
	// DefaultAckWait.
	AckWait time.Duration
	// MaxAckPending bounds the messages delivered and not yet acknowledged,
	// held-back and deferred ones included: a consumer that defers many
	// messages (the courier) needs it large. Messages waiting in a queue
	// behind a slow handler are kept in progress (their AckWait restarted
	// every AckWait/3), so a deep queue costs them time, not redeliveries;
	// they wait for this process, though, not for whichever replica is
	// free, so a slow handler's consumer keeps it near what Concurrency
	// workers take in a few AckWaits. Default DefaultMaxAckPending.
	MaxAckPending int
	// Validate, when set, checks an envelope before the handler sees it; a
	// refused one is poison (e.g. ValidateSchema).
	Validate func(events.Envelope) error
	// Observe, when set, is called after each delivery is settled, from the
	// worker that took it; it must not block.
	Observe func(Outcome)
}

// Result is how one delivery was settled.
type Result string

// Results of a delivery.
const (
	// Applied: the handler ran and its transaction committed.
	Applied Result = "applied"
	// Duplicate: the consumer had taken the event before; acknowledged.
	Duplicate Result = "duplicate"
	// Stale: older than what the consumer had taken of its aggregate;
	// acknowledged without effect.
	Stale Result = "stale"
	// Skipped: redriven from the dead letters as a skip; recorded without
	// effect.
	Skipped Result = "skipped"
	// HeldBack: its predecessor has not been taken; redelivered later.
	HeldBack Result = "held_back"
	// Deferred: the handler asked for it again later (RetryAfter).
	Deferred Result = "deferred"
	// Retried: the handler failed; redelivered later.
	Retried Result = "retried"
	// Terminated: poison, or out of deliveries: dead-lettered.
	Terminated Result = "terminated"
)

// Outcome describes one settled delivery.
type Outcome struct {
	Consumer string
	Result   Result
	// Env is the event; zero when the message was not a CloudEvent.
	Env events.Envelope
	// Stream and StreamSeq locate the event in its original stream, also
	// for a redriven or replayed copy.
	Stream    string
	StreamSeq uint64
	// Redriven is true for a copy from the dead letters or a replay.
	Redriven bool
	// Delivered counts this message's deliveries, this one included.
	Delivered int
	// Adopted is true when the event was the first of its aggregate the
	// consumer took, with a sequence above 1 (see the package docs).
	Adopted bool
	// Err is why the delivery was not applied, if it was not.
	Err error
}

// Stats are a consumer's counters since it was made.
type Stats struct {
	Delivered  int64 // messages received, redeliveries included
	Applied    int64 // events taken: the handler's transaction committed
	Duplicates int64 // redeliveries of events taken before
	Stale      int64 // events older than their aggregate's last one
	Skipped    int64 // events redriven as skips
	Adopted    int64 // aggregates first seen past sequence 1 (of Applied)
	HeldBack   int64 // deliveries held back for a missing predecessor
	Deferred   int64 // deliveries deferred by RetryAfter
	Retried    int64 // deliveries that failed and will be redelivered
	Terminated int64 // messages dead-lettered
}

type counters struct {
	delivered, applied, duplicates, stale, skipped, adopted atomic.Int64
	heldBack, deferred, retried, terminated                 atomic.Int64
}

// Consumer is one durable consumer of one stream, with its redrive
// subject.
type Consumer struct {
	cfg     Config
	log     *slog.Logger
	n       counters
	ackWait time.Duration
	// serverBackoff is the BackOff JetStream is given; nakDelay corrects
	// for how the server combines it with NakWithDelay.
	serverBackoff []time.Duration
	streams       sync.Map // stream name → jetstream.Stream, for lookups
	// started is closed once Run first subscribed.
	started   chan struct{}
	startOnce sync.Once
}

var validName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// New checks cfg, applies its defaults and returns the consumer; Run starts
// it.
func New(cfg Config) (*Consumer, error) {
	switch {
	case !validName.MatchString(cfg.Name):
		return nil, fmt.Errorf("consumer name %q: use letters, digits, - and _ only", cfg.Name)
	case cfg.Stream == "":
		return nil, fmt.Errorf("consumer %s: no stream", cfg.Name)
	case cfg.Handler == nil:
		return nil, fmt.Errorf("consumer %s: no handler", cfg.Name)
	case cfg.DB == nil:
		return nil, fmt.Errorf("consumer %s: no database", cfg.Name)
	case cfg.JetStream == nil:
		return nil, fmt.Errorf("consumer %s: no JetStream connection", cfg.Name)
	case cfg.Ordered && len(cfg.Subjects) > 0:
		return nil, fmt.Errorf("consumer %s: an ordered consumer reads the whole stream (it needs every event of an aggregate); leave Subjects empty", cfg.Name)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.MaxDeliver <= 0 {
		cfg.MaxDeliver = DefaultMaxDeliver
	}
	if len(cfg.Backoff) == 0 {
		cfg.Backoff = slices.Clone(DefaultBackoff) // a copy: the exported default stays as it is
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.MaxAckPending <= 0 {
		cfg.MaxAckPending = DefaultMaxAckPending
	}
	if cfg.AdoptAfter <= 0 {
		cfg.AdoptAfter = DefaultAdoptAfter
	}
	cfg.AdoptAfter = min(cfg.AdoptAfter, cfg.MaxDeliver)
	c := &Consumer{cfg: cfg, log: cfg.Logger.With("consumer", cfg.Name), ackWait: cfg.AckWait, started: make(chan struct{})}
	// JetStream redelivers an unacknowledged message after BackOff[n-1]
	// (AckWait is BackOff[0]): the retry schedule, but never below AckWait,
	// which is how long a handler may run. JetStream wants no more
	// BackOff entries than MaxDeliver.
	n := min(len(cfg.Backoff), cfg.MaxDeliver)
	for i := range n {
		c.serverBackoff = append(c.serverBackoff, max(cfg.AckWait, cfg.Backoff[i]))
	}
	return c, nil
}

// Name is the consumer's durable name.
func (c *Consumer) Name() string { return c.cfg.Name }

// Started is closed once Run has started: its durable consumers are
// created and it is subscribed to them. Until then Run is waiting for the
// stream to exist or the server to answer; a configuration the server
// refuses makes it return its error instead.
func (c *Consumer) Started() <-chan struct{} { return c.started }

// Stats returns the counters.
func (c *Consumer) Stats() Stats {
	return Stats{
		Delivered: c.n.delivered.Load(), Applied: c.n.applied.Load(), Duplicates: c.n.duplicates.Load(),
		Stale: c.n.stale.Load(), Skipped: c.n.skipped.Load(), Adopted: c.n.adopted.Load(),
		HeldBack: c.n.heldBack.Load(), Deferred: c.n.deferred.Load(), Retried: c.n.retried.Load(),
		Terminated: c.n.terminated.Load(),
	}
}

// Run creates the dead-letter and redrive streams if needed, creates or
// updates the durable consumers (on Stream and on the redrive stream), and
// takes events until ctx is done. It waits for Stream to exist, so it may
// start before the producer has created it. Should the server end a
// subscription (the durable deleted, say by an operator resetting it, or
// its stream deleted and created again), Run logs it and creates the
// durable again, which then starts from the stream's first event: the
// inbox makes the copies duplicates. On return, events being handled have
// finished and queued ones were handed back to JetStream. Started tells
// when it has first subscribed.
func (c *Consumer) Run(ctx context.Context) error {
	queues := make([]chan jetstream.Msg, c.cfg.Concurrency)
	var wg sync.WaitGroup
	// inflight counts the messages dispatched and not yet settled: before
	// a durable is created again, those of the ended subscription are
	// settled, so that no ack of theirs reaches the new durable (which
	// matches acks by stream sequence alone: after a stream was created
	// again, another event's).
	var inflight sync.WaitGroup
	// A handler finishes what it started even when ctx ends: its
	// transaction is short, and an abandoned one costs a redelivery.
	work := context.WithoutCancel(ctx)
	queued := newWaiting()
	for i := range queues {
		// As deep as MaxAckPending, so dispatching never blocks the
		// subscription (which would stall its heartbeats).
		queues[i] = make(chan jetstream.Msg, c.cfg.MaxAckPending)
		wg.Go(func() {
			for m := range queues[i] {
				if queued.take(m) > c.ackWait/takenLate && ctx.Err() == nil {
					c.inProgress(m) // the handler's deadline is within AckWait again
				}
				if ctx.Err() != nil {
					// Shutting down: hand it back for another process.
					_ = m.NakWithDelay(time.Millisecond)
				} else {
					c.process(work, m)
				}
				inflight.Done()
			}
		})
	}
	// dispatching guards the queues' close: nats.go can report a stopped
	// subscription closed (consume returns) while its callback is still
	// running dispatch, whose send would then find its queue closed. A
	// message dispatched after the close began is handed back instead.
	var (
		dispatching sync.RWMutex
		closing     bool
	)
	defer func() {
		dispatching.Lock()
		closing = true
		dispatching.Unlock()
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
	}()
	pctx, stopPruning := context.WithCancel(ctx)
	defer stopPruning() // before the wait above
	wg.Go(func() { c.pruneEvery(pctx, pruneFirst, pruneInterval) })
	wg.Go(func() { c.keepInProgress(pctx, queued, c.ackWait/3) })
	dispatch := func(m jetstream.Msg) {
		dispatching.RLock()
		defer dispatching.RUnlock()
		if closing {
			_ = m.NakWithDelay(time.Millisecond)
			return
		}
		h := fnv.New32a()
		h.Write([]byte(m.Headers().Get(events.HeaderSource)))
		h.Write([]byte{0})
		h.Write([]byte(m.Headers().Get(events.HeaderSubject)))
		inflight.Add(1)
		queued.add(m)
		queues[h.Sum32()%uint32(len(queues))] <- m
	}
	subscribed := false
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		ended, err := c.consume(ctx, dispatch, &subscribed)
		switch {
		case ctx.Err() != nil:
			c.log.Info("consumer stopped", "stats", c.Stats())
			return nil
		case err != nil && !subscribed:
			return err // at start: a configuration the server refuses, say
		case err != nil:
			c.log.Warn("cannot subscribe again; retrying", "stream", c.cfg.Stream, "err", err, "retry_in", wait)
		case ended:
			c.log.Warn("the server ended the subscription (durable or stream deleted?); creating the durable again",
				"stream", c.cfg.Stream, "retry_in", wait)
		}
		inflight.Wait()
		select {
		case <-ctx.Done():
			c.log.Info("consumer stopped", "stats", c.Stats())
			return nil
		case <-time.After(wait):
		}
	}
}

// consume ensures the streams and durables and takes their messages into
// dispatch until ctx is done (ended false) or one of the subscriptions
// ends (ended true): the server ended it, or its durable is gone (see
// watchDurable); either way both are stopped on return. It sets
// *subscribed, and closes Started, once it has subscribed.
func (c *Consumer) consume(ctx context.Context, dispatch func(jetstream.Msg), subscribed *bool) (ended bool, err error) {
	if err := EnsureStreams(ctx, c.cfg.JetStream); err != nil {
		return false, err
	}
	main, err := c.ensureConsumer(ctx, c.cfg.Stream, c.cfg.Subjects)
	if err != nil {
		return false, err
	}
	redrive, err := c.ensureConsumer(ctx, RedriveStream, []string{RedriveSubject(c.cfg.Name, ">")})
	if err != nil {
		return false, err
	}
	batch := max(16, 4*c.cfg.Concurrency)
	var stops []jetstream.ConsumeContext
	defer func() {
		for _, s := range stops {
			s.Stop()
		}
		for _, s := range stops {
			<-s.Closed()
		}
	}()
	for _, cons := range []jetstream.Consumer{main, redrive} {
		cc, err := cons.Consume(dispatch, jetstream.PullMaxMessages(batch), jetstream.ConsumeErrHandler(c.watchDurable(ctx, cons)))
		if err != nil {
			return false, fmt.Errorf("consumer %s: consume: %w", c.cfg.Name, err)
		}
		stops = append(stops, cc)
	}
	*subscribed = true
	c.startOnce.Do(func() { close(c.started) })
	c.log.Info("consuming", "stream", c.cfg.Stream, "subjects", c.cfg.Subjects, "ordered", c.cfg.Ordered,
		"concurrency", c.cfg.Concurrency, "max_deliver", c.cfg.MaxDeliver)
	select {
	case <-ctx.Done():
		return false, nil
	case <-stops[0].Closed():
	case <-stops[1].Closed():
	}
	return ctx.Err() == nil, nil
}

// watchDurable is a subscription's error handler: it logs the error, and
// when pulls go unanswered (no responders, no heartbeat) it asks the
// server whether the durable is still there, and ends the subscription if
// it is not. nats.go ends a subscription itself only when the server says
// the durable was deleted; one lost while the connection was down (a
// server that came back on an empty store) only goes quiet.
func (c *Consumer) watchDurable(ctx context.Context, cons jetstream.Consumer) func(jetstream.ConsumeContext, error) {
	var checking atomic.Bool
	return func(cc jetstream.ConsumeContext, err error) {
		c.log.Warn("consume", "err", err)
		if !errors.Is(err, jetstream.ErrNoHeartbeat) && !errors.Is(err, nats.ErrNoResponders) {
			return
		}
		if !checking.CompareAndSwap(false, true) {
			return
		}
		go func() {
			defer checking.Store(false)
			ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, err := cons.Info(ictx)
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
				c.log.Warn("the durable is gone from the server; subscribing again", "err", err)
				cc.Stop()
			}
		}()
	}
}

// ensureConsumer creates or updates the durable consumer on stream,
// waiting for the stream to exist and for the server to answer; a
// configuration the server refuses fails at once.
func (c *Consumer) ensureConsumer(ctx context.Context, stream string, subjects []string) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:       c.cfg.Name,
		Description:   "orderflow consumer kit: " + c.cfg.Name,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.serverBackoff[0],
		BackOff:       c.serverBackoff,
		MaxDeliver:    c.cfg.MaxDeliver,
		MaxAckPending: c.cfg.MaxAckPending,
	}
	switch len(subjects) {
	case 0:
	case 1:
		cfg.FilterSubject = subjects[0]
	default:
		cfg.FilterSubjects = subjects
	}
	wait, warned := 250*time.Millisecond, false
	for {
		cons, err := c.cfg.JetStream.CreateOrUpdateConsumer(ctx, stream, cfg)
		var apiErr *jetstream.APIError
		switch {
		case err == nil:
			return cons, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.As(err, &apiErr) && apiErr.Code == 400:
			return nil, fmt.Errorf("consumer %s on %s: %w", c.cfg.Name, stream, err)
		case !warned:
			c.log.Warn("waiting for the stream to be created and the server to answer", "stream", stream, "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// origin is where a message's event comes from: for a copy on the redrive
// stream, the original stream, sequence and subject.
type origin struct {
	stream     string
	seq        uint64
	subject    string
	redriven   bool
	replayFrom uint64 // a replay's first stream sequence; 0 otherwise
	skip       bool
}

func (c *Consumer) originOf(m jetstream.Msg, meta *jetstream.MsgMetadata) (origin, error) {
	o := origin{stream: meta.Stream, seq: meta.Sequence.Stream, subject: m.Subject()}
	if meta.Stream != RedriveStream {
		return o, nil
	}
	h := m.Headers()
	o.redriven = true
	o.stream = h.Get(HeaderOriginalStream)
	seq, err := strconv.ParseUint(h.Get(HeaderOriginalSeq), 10, 64)
	if o.stream == "" || err != nil {
		return o, fmt.Errorf("redriven message without a valid %s/%s", HeaderOriginalStream, HeaderOriginalSeq)
	}
	o.seq = seq
	o.subject = strings.TrimPrefix(m.Subject(), RedriveSubject(c.cfg.Name, ""))
	if v := h.Get(HeaderReplayFrom); v != "" {
		o.replayFrom, _ = strconv.ParseUint(v, 10, 64)
	}
	o.skip = h.Get(HeaderSkip) == "true"
	return o, nil
}

// process settles one delivery: ack, nak with a delay, or term.
func (c *Consumer) process(ctx context.Context, m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		c.log.Error("message without JetStream metadata", "subject", m.Subject(), "err", err)
		return
	}
	c.n.delivered.Add(1)
	out := Outcome{Consumer: c.cfg.Name, Delivered: int(meta.NumDelivered), Stream: meta.Stream, StreamSeq: meta.Sequence.Stream}
	defer func() {
		if c.cfg.Observe != nil {
			c.cfg.Observe(out)
		}
	}()
	org, err := c.originOf(m, meta)
	out.Stream, out.StreamSeq, out.Redriven = org.stream, org.seq, org.redriven
	var env events.Envelope
	if err == nil {
		env, err = events.Decode(m.Headers(), m.Data())
	}
	if err == nil && c.cfg.Validate != nil {
		if verr := c.cfg.Validate(env); verr != nil {
			err = fmt.Errorf("invalid %s payload: %w", env.Type, verr)
			out.Env = env // decoded: the dead letter's log names it
			// An event with an ID can be remembered. Skipped, it is taken
			// as any skip (take records it, or finds it a duplicate);
			// otherwise a copy of one taken already, a replay's say, is a
			// duplicate, not poison again.
			if org.skip {
				err = nil
			} else {
				ictx, cancel := context.WithTimeout(ctx, c.ackWait*9/10)
				had, herr := db.New(c.cfg.DB).InboxHas(ictx, db.InboxHasParams{Consumer: c.cfg.Name, EventID: env.ID})
				cancel()
				switch {
				case herr != nil && int(meta.NumDelivered) >= c.cfg.MaxDeliver:
					out.Env, out.Result, out.Err = env, Terminated, err
					c.terminate(m, out, fmt.Sprintf("%v; and the inbox could not be read through %d deliveries: %v", err, meta.NumDelivered, herr))
					return
				case herr != nil:
					// Not known to be poison yet: asked again later.
					out.Env, out.Result, out.Err = env, Retried, herr
					c.n.retried.Add(1)
					delay := c.backoff(int(meta.NumDelivered))
					c.log.Warn("invalid event: the inbox could not be read; will retry", "event_id", env.ID, "err", herr, "retry_in", delay)
					c.nak(m, int(meta.NumDelivered), delay)
					return
				case had:
					out.Env, out.Result = env, Duplicate
					c.n.duplicates.Add(1)
					c.log.Debug("invalid event taken already: a duplicate", "event_id", env.ID, "type", env.Type)
					if aerr := m.Ack(); aerr != nil {
						c.log.Warn("ack", "err", aerr)
					}
					return
				}
			}
		}
	}
	if err != nil && org.skip {
		// An operator skips a message no one can read: drop it.
		out.Result = Skipped
		c.n.skipped.Add(1)
		c.log.Warn("unreadable message skipped by an operator (dlq skip)", "stream", org.stream, "stream_seq", org.seq, "err", err)
		if aerr := m.Ack(); aerr != nil {
			c.log.Warn("ack", "err", aerr)
		}
		return
	}
	if err != nil {
		out.Result, out.Err = Terminated, err
		c.terminate(m, out, "poison: "+err.Error())
		return
	}
	out.Env = env
	log := c.log.With("event_id", env.ID, "type", env.Type, "subject", env.Subject, "sequence", env.Sequence,
		"stream", org.stream, "stream_seq", org.seq, "delivered", meta.NumDelivered)

	hctx, cancel := context.WithTimeout(ctx, c.ackWait*9/10)
	t, err := c.take(hctx, env, org, int(meta.NumDelivered))
	cancel()
	out.Adopted = t.adopted
	var retry *RetryError
	last := int(meta.NumDelivered) >= c.cfg.MaxDeliver
	switch {
	case err == nil && t.result == HeldBack:
		out.Result, out.Err = HeldBack, fmt.Errorf("sequence %d waits for %d", env.Sequence, t.waitingFor)
		if last {
			out.Result = Terminated
			c.terminate(m, out, fmt.Sprintf("held back through %d deliveries: sequence %d of %s waits for %d, which this consumer has not taken",
				meta.NumDelivered, env.Sequence, env.Subject, t.waitingFor))
			return
		}
		c.n.heldBack.Add(1)
		log.Debug("event held back", "waiting_for", t.waitingFor)
		c.nak(m, int(meta.NumDelivered), c.backoff(int(meta.NumDelivered)))
	case err == nil:
		out.Result = t.result
		switch t.result {
		case Applied:
			c.n.applied.Add(1)
			if t.adopted {
				c.n.adopted.Add(1)
				log.Info("aggregate adopted mid-stream: no earlier event of it is within this consumer's reach")
			}
			log.Debug("event applied", "redriven", org.redriven)
		case Duplicate:
			c.n.duplicates.Add(1)
			log.Debug("duplicate event: already taken")
		case Stale:
			c.n.stale.Add(1)
			log.Warn("stale event: older than what this consumer has taken of its aggregate; acknowledged without effect")
		case Skipped:
			c.n.skipped.Add(1)
			log.Warn("event skipped by an operator (dlq skip)")
		}
		if err := m.Ack(); err != nil {
			// The commit stands; the redelivery will be a duplicate.
			log.Warn("ack", "err", err)
		}
	case errors.As(err, &retry):
		out.Result, out.Err = Deferred, err
		if last {
			out.Result = Terminated
			c.terminate(m, out, fmt.Sprintf("still deferred after %d deliveries: %s", meta.NumDelivered, retry.Reason))
			return
		}
		c.n.deferred.Add(1)
		log.Debug("event deferred", "delay", retry.Delay, "reason", retry.Reason)
		c.nak(m, int(meta.NumDelivered), retry.Delay)
	case IsPermanent(err):
		out.Result, out.Err = Terminated, err
		c.terminate(m, out, err.Error())
	default:
		out.Result, out.Err = Retried, err
		if last {
			out.Result = Terminated
			c.terminate(m, out, fmt.Sprintf("gave up after %d deliveries: %v", meta.NumDelivered, err))
			return
		}
		c.n.retried.Add(1)
		delay := c.backoff(int(meta.NumDelivered))
		log.Warn("event failed; will retry", "err", err, "retry_in", delay)
		c.nak(m, int(meta.NumDelivered), delay)
	}
}

// terminate dead-letters m: JetStream stops delivering it and publishes the
// terminated advisory that DEAD_LETTERS captures, with the reason.
func (c *Consumer) terminate(m jetstream.Msg, out Outcome, reason string) {
	c.n.terminated.Add(1)
	if len(reason) > 1000 {
		reason = reason[:1000]
	}
	c.log.Warn("event dead-lettered", "event_id", out.Env.ID, "type", out.Env.Type, "subject", m.Subject(),
		"stream", out.Stream, "stream_seq", out.StreamSeq, "delivered", out.Delivered, "reason", reason)
	if out.Redriven && out.Stream != "" {
		// The advisory names the copy, which the redrive stream keeps a
		// week, while DEAD_LETTERS keeps the entry 30 days: the reason
		// says where the original is, to redrive it once the copy is gone.
		from, _ := strconv.ParseUint(m.Headers().Get(HeaderReplayFrom), 10, 64)
		reason = originalPrefix(out.Stream, out.StreamSeq, from) + reason
	}
	if err := m.TermWithReason(reason); err != nil {
		c.log.Warn("term", "err", err)
	}
}

// backoff is the retry delay after the n-th delivery.
func (c *Consumer) backoff(n int) time.Duration {
	return c.cfg.Backoff[min(n, len(c.cfg.Backoff))-1]
}

// nak asks for the message again after about want. JetStream counts a
// NakWithDelay from AckWait and then waits BackOff[n-1] instead, so it adds
// BackOff[n-1]-AckWait to the delay: subtract it, so the redelivery comes
// when it should (or at BackOff[n-1]-AckWait, when that is longer).
func (c *Consumer) nak(m jetstream.Msg, n int, want time.Duration) {
	sb := c.serverBackoff
	skew := sb[min(n, len(sb))-1] - sb[0]
	d := max(want-skew, time.Millisecond)
	if err := m.NakWithDelay(d); err != nil {
		c.log.Warn("nak", "err", err)
	}
}

// taken is what take did with an event.
type taken struct {
	result     Result
	adopted    bool
	waitingFor int64 // HeldBack: the sequence the consumer waits for
}

// take runs the inbox check, the sequence check and the handler in one
// transaction; delivered counts the message's deliveries. An error means
// nothing was committed.
func (c *Consumer) take(ctx context.Context, env events.Envelope, org origin, delivered int) (_ taken, err error) {
	tx, err := c.cfg.DB.BeginTx(ctx, nil)
	if err != nil {
		return taken{}, fmt.Errorf("begin: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) && err == nil {
				err = fmt.Errorf("rollback: %w", rerr)
			}
		}
	}()
	commit := func(t taken) (taken, error) {
		if err := tx.Commit(); err != nil {
			return taken{}, fmt.Errorf("commit: %w", err)
		}
		committed = true
		return t, nil
	}
	q := db.New(tx)
	n, err := q.InsertInbox(ctx, db.InsertInboxParams{
		Consumer: c.cfg.Name, EventID: env.ID, EventType: env.Type, Source: env.Source, Subject: env.Subject,
		Sequence: env.Sequence, Stream: org.stream, StreamSeq: int64(org.seq),
	})
	if err != nil {
		return taken{}, fmt.Errorf("insert inbox: %w", err)
	}
	if n == 0 {
		return taken{result: Duplicate}, nil
	}

	t := taken{result: Applied}
	ordered := c.cfg.Ordered && env.Sequence > 0 && env.Subject != ""
	seqKey := db.LockInboxSequenceParams{Consumer: c.cfg.Name, Source: env.Source, Subject: env.Subject}
	if ordered {
		last, err := q.LockInboxSequence(ctx, seqKey)
		if err != nil {
			return taken{}, fmt.Errorf("lock inbox sequence: %w", err)
		}
		switch {
		case last == 0 && env.Sequence > 1:
			first, err := c.firstInReach(ctx, env, org)
			if err != nil {
				return taken{}, err
			}
			// Even with nothing earlier in the stream, give a producer
			// that published out of order a few deliveries' time.
			if !first || delivered < c.cfg.AdoptAfter {
				return taken{result: HeldBack, waitingFor: env.Sequence - 1}, nil
			}
			t.adopted = true
		case last > 0 && env.Sequence <= last:
			if err := q.SetInboxOutcome(ctx, db.SetInboxOutcomeParams{Consumer: c.cfg.Name, EventID: env.ID, Outcome: string(Stale)}); err != nil {
				return taken{}, fmt.Errorf("mark stale: %w", err)
			}
			return commit(taken{result: Stale})
		case last > 0 && env.Sequence > last+1:
			return taken{result: HeldBack, waitingFor: last + 1}, nil
		}
	}
	if org.skip {
		t.result = Skipped
		if err := q.SetInboxOutcome(ctx, db.SetInboxOutcomeParams{Consumer: c.cfg.Name, EventID: env.ID, Outcome: string(Skipped)}); err != nil {
			return taken{}, fmt.Errorf("mark skipped: %w", err)
		}
	} else if err := c.cfg.Handler(ctx, tx, env); err != nil {
		return taken{}, err
	}
	if ordered {
		if err := q.SetInboxSequence(ctx, db.SetInboxSequenceParams{
			Consumer: seqKey.Consumer, Source: seqKey.Source, Subject: seqKey.Subject, LastSequence: env.Sequence,
		}); err != nil {
			return taken{}, fmt.Errorf("set inbox sequence: %w", err)
		}
	}
	return commit(t)
}

// firstInReach reports whether the event is the first of its aggregate at
// or after the consumer's start in the original stream: the stream's first
// message, or a replay's first sequence. Then no earlier event of the
// aggregate can reach this consumer, and it may start the aggregate here.
func (c *Consumer) firstInReach(ctx context.Context, env events.Envelope, org origin) (bool, error) {
	filter := aggregateFilter(org.subject, env.Subject)
	if filter == "" {
		c.log.Warn("cannot tell an aggregate's subjects from its event's; taking it as the first", "subject", org.subject)
		return true, nil
	}
	st, err := c.stream(ctx, org.stream)
	if err != nil {
		return false, err
	}
	from := max(org.replayFrom, 1)
	raw, err := st.GetMsg(ctx, from, jetstream.WithGetMsgSubject(filter))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("look up the first event of %s in %s: %w", filter, org.stream, err)
	}
	return raw.Sequence >= org.seq, nil
}

// aggregateFilter is the subject filter matching every event of the
// aggregate an event's subject belongs to: orderflow.<context>.<event>.<id>
// becomes orderflow.<context>.*.<id>. It is "" when the subject does not
// end with the aggregate's ID.
func aggregateFilter(subject, aggregateID string) string {
	tokens := strings.Split(subject, ".")
	if len(tokens) < 3 || tokens[len(tokens)-1] != aggregateID {
		return ""
	}
	return strings.Join(tokens[:len(tokens)-2], ".") + ".*." + aggregateID
}

func (c *Consumer) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if s, ok := c.streams.Load(name); ok {
		return s.(jetstream.Stream), nil
	}
	s, err := c.cfg.JetStream.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	c.streams.Store(name, s)
	return s, nil
}
