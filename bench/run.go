package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/workflows"
)

// Task queues of the baselines: their own, so their workers never take an
// orderflow task or each other's.
const (
	SameShapeTaskQueue = "bench-same-shape"
	NaiveTaskQueue     = "bench-naive"
)

// Config is one benchmark run.
type Config struct {
	// N orders per round and system, C of them at a time, Rounds rounds.
	N, C, Rounds int
	// Warmup orders per system before the first round, not measured.
	Warmup int
	// APIURL is orderflow's HTTP API, served by this process.
	APIURL string
	// Temporal is a client of the server orderflow's worker uses; the
	// baselines run on it too.
	Temporal client.Client
	// WorkerOptions are orderflow's worker options; the baselines' workers
	// get the same.
	WorkerOptions sdkworker.Options
	// JetStream, when set, feeds the lag probe: a consumer of ORDER_EVENTS
	// that measures each event's age on delivery.
	JetStream jetstream.JetStream
	// RecordedAt tells when the outbox rows of the given events were
	// written; the lag counts from there. Unset, or for an event it does
	// not know, the lag counts from the event's ce-time instead, which for
	// order.placed is when the API took the order, well before the row.
	RecordedAt func(ctx context.Context, eventIDs []uuid.UUID) (map[uuid.UUID]time.Time, error)
	// PostgresPID is the private PostgreSQL's postmaster, 0 when external.
	PostgresPID int
	// Statements, when set, reads pg_stat_statements (-pg-statements):
	// each round is charged what ran from its start to its end, for
	// orderflow once its last events were delivered (200 ms later than
	// the CPU sample ends). On a server that only the bench uses that is
	// the round's own work, give or take what the previous round left
	// running (the Temporal server's last visibility writes, the relay's
	// last marks).
	Statements func(ctx context.Context) (StatementCounts, error)
	// Drain, when set, fills the outbox with n events while no relay runs,
	// then runs one and returns how long it took to publish them all.
	Drain       func(ctx context.Context, n int) (time.Duration, error)
	DrainEvents int
	// Downstream says the other contexts' consumers run in the process.
	Downstream bool
	// LogLevel is the level the service parts log at, for the record.
	LogLevel string
	// Machine describes where the run happened.
	Machine Machine
	// Progress receives the progress bar; Logger the rest.
	Progress io.Writer
	Logger   *slog.Logger
}

// Run runs the benchmark: warm-up, an idle lag phase, then Rounds rounds of
// orderflow, same-shape and naive in turn (interleaved, so that a noisy
// neighbour hurts all three alike), then the relay drain.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.N < 1 || cfg.C < 1 || cfg.Rounds < 1 {
		return nil, errors.New("bench: -n, -c and -rounds must be at least 1")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	began := time.Now()
	stop, err := startBaselineWorkers(cfg)
	if err != nil {
		return nil, err
	}
	defer stop()

	systems := []system{
		newHTTPSystem(cfg.APIURL, cfg.C),
		&sameShapeSystem{c: cfg.Temporal, taskQueue: SameShapeTaskQueue},
		&naiveSystem{c: cfg.Temporal, taskQueue: NaiveTaskQueue},
	}
	runID := began.UTC().Format("20060102T150405")

	probe, err := startLagProbe(ctx, cfg.JetStream)
	if err != nil {
		return nil, err
	}
	defer probe.stop()

	if cfg.Warmup > 0 {
		for _, sys := range systems {
			bar := newBar(cfg.Progress, "warm-up "+sys.Name(), cfg.Warmup)
			_, _, err := drive(ctx, sys, fmt.Sprintf("bench-%s-warmup-%s", runID, sys.Name()), cfg.Warmup, min(cfg.C, cfg.Warmup), bar.set)
			bar.finish()
			if err != nil {
				return nil, fmt.Errorf("warm-up: %w", err)
			}
		}
	}

	res := &Result{Machine: cfg.Machine, Config: RunConfig{
		N: cfg.N, C: cfg.C, Rounds: cfg.Rounds, Warmup: cfg.Warmup, DrainEvents: cfg.DrainEvents,
		Downstream: cfg.Downstream, LogLevel: cfg.LogLevel, PGStatements: cfg.Statements != nil,
	}, StartedAt: began.UTC()}

	// Idle lag: one order at a time, nothing else running.
	if cfg.JetStream != nil {
		idle := max(10, min(cfg.N, 30))
		probe.reset()
		bar := newBar(cfg.Progress, "idle lag (1 at a time)", idle)
		_, _, err := drive(ctx, systems[0], "bench-"+runID+"-idle", idle, 1, bar.set)
		bar.finish()
		if err != nil {
			return nil, fmt.Errorf("idle lag: %w", err)
		}
		time.Sleep(200 * time.Millisecond) // the last events' delivery
		lags, err := probe.take(ctx, cfg.RecordedAt)
		if err != nil {
			return nil, fmt.Errorf("idle lag: %w", err)
		}
		res.Lag.Idle = percentiles(lags)
	}

	rounds := map[string][]roundResult{}
	for r := 1; r <= cfg.Rounds; r++ {
		for _, sys := range systems {
			rr, err := runRound(ctx, cfg, sys, probe, fmt.Sprintf("bench-%s-r%d-%s", runID, r, sys.Name()), fmt.Sprintf("round %d/%d %s", r, cfg.Rounds, sys.Name()))
			if err != nil {
				return nil, err
			}
			rounds[sys.Name()] = append(rounds[sys.Name()], rr)
		}
	}

	if cfg.Drain != nil && cfg.DrainEvents > 0 {
		// The drain times the relay: the probe, whose rounds are over,
		// would only take CPU from it decoding 50,000 events.
		probe.stop()
		var rates []float64
		for r := 1; r <= cfg.Rounds; r++ {
			fmt.Fprintf(cfg.Progress, "relay drain %d/%d: %d events ...", r, cfg.Rounds, cfg.DrainEvents)
			took, err := cfg.Drain(ctx, cfg.DrainEvents)
			if err != nil {
				fmt.Fprintln(cfg.Progress)
				return nil, fmt.Errorf("relay drain: %w", err)
			}
			rate := float64(cfg.DrainEvents) / took.Seconds()
			fmt.Fprintf(cfg.Progress, " %.0f events/s\n", rate)
			rates = append(rates, rate)
		}
		res.Drain = spread(rates)
	}

	res.summarize(rounds)
	res.PeakRSSMiB = RSS{Process: peakRSS(os.Getpid())}
	if cfg.PostgresPID > 0 {
		res.PeakRSSMiB.Postgres = peakRSS(cfg.PostgresPID)
	}
	res.Took = time.Since(began).Round(time.Second).String()
	return res, nil
}

// roundResult is one system's round.
type roundResult struct {
	start         time.Time
	elapsed       time.Duration
	timings       []timing
	cpu           cpuSample
	shares        map[string]float64
	historyEvents float64
	lag           []time.Duration
	statements    []Statement // nil without Config.Statements
	// statementsShort: pg_stat_statements evicted entries meanwhile.
	statementsShort bool
}

func runRound(ctx context.Context, cfg Config, sys system, probe *lagProbe, keyPrefix, label string) (roundResult, error) {
	runtime.GC()
	probe.reset()
	var stmtsBefore StatementCounts
	if cfg.Statements != nil {
		var err error
		if stmtsBefore, err = cfg.Statements(ctx); err != nil {
			return roundResult{}, fmt.Errorf("read pg_stat_statements: %w", err)
		}
	}
	var prof profiler
	prof.start()
	before := sampleCPU(cfg.PostgresPID)
	bar := newBar(cfg.Progress, label, cfg.N)
	start := time.Now()
	timings, elapsed, err := drive(ctx, sys, keyPrefix, cfg.N, cfg.C, bar.set)
	bar.finishRate(float64(len(timings)) / elapsed.Seconds())
	after := sampleCPU(cfg.PostgresPID)
	shares := prof.stop()
	if err != nil {
		return roundResult{}, err
	}
	rr := roundResult{
		start: start, elapsed: elapsed, timings: timings, shares: shares,
		cpu: cpuSample{self: after.self - before.self, postgres: after.postgres - before.postgres},
	}
	if sys.Name() == SystemOrderflow {
		time.Sleep(200 * time.Millisecond) // the last events' delivery
	}
	if cfg.Statements != nil {
		after, err := cfg.Statements(ctx)
		if err != nil {
			return roundResult{}, fmt.Errorf("read pg_stat_statements: %w", err)
		}
		rr.statements = statementsRun(stmtsBefore.Statements, after.Statements)
		rr.statementsShort = after.Deallocations != stmtsBefore.Deallocations
	}
	if sys.Name() == SystemOrderflow {
		if rr.lag, err = probe.take(ctx, cfg.RecordedAt); err != nil {
			return roundResult{}, fmt.Errorf("lag: %w", err)
		}
	}
	rr.historyEvents = historyEvents(ctx, cfg.Temporal, timings, 5)
	return rr, nil
}

// historyEvents averages the history length of up to k of the orders.
func historyEvents(ctx context.Context, c client.Client, timings []timing, k int) float64 {
	var total, n int
	for i := 0; i < len(timings) && n < k; i += max(1, len(timings)/k) {
		iter := c.GetWorkflowHistory(ctx, timings[i].workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		count := 0
		for iter.HasNext() {
			if _, err := iter.Next(); err != nil {
				count = -1
				break
			}
			count++
		}
		if count > 0 {
			total += count
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return float64(total) / float64(n)
}

// startBaselineWorkers runs the two baselines' workers on cfg.Temporal.
func startBaselineWorkers(cfg Config) (func(), error) {
	same := sdkworker.New(cfg.Temporal, SameShapeTaskQueue, cfg.WorkerOptions)
	same.RegisterWorkflowWithOptions(workflows.Order, workflow.RegisterOptions{Name: workflows.OrderWorkflowName})
	same.RegisterActivity(&NoopActivities{})
	naive := sdkworker.New(cfg.Temporal, NaiveTaskQueue, cfg.WorkerOptions)
	naive.RegisterWorkflowWithOptions(NaiveOrder, workflow.RegisterOptions{Name: NaiveWorkflowName})
	naive.RegisterActivity(&NoopActivities{})
	if err := same.Start(); err != nil {
		return nil, fmt.Errorf("start same-shape worker: %w", err)
	}
	if err := naive.Start(); err != nil {
		same.Stop()
		return nil, fmt.Errorf("start naive worker: %w", err)
	}
	return func() { same.Stop(); naive.Stop() }, nil
}

// lagProbe is a consumer of ORDER_EVENTS that records when each event
// arrived, so that take can tell the outbox commit -> consumer delivery lag:
// arrival minus the start of the statement that wrote the event's outbox row
// (the order steps each write in one statement, committed right after it,
// so this overstates the lag by the statement's own run time). Arrival is
// read on this host's clock and recorded_at on the database's: one clock
// with the bench's private PostgreSQL; with DATABASE_URL their skew adds
// to the figure.
type lagProbe struct {
	mu       sync.Mutex
	arrivals []arrival
	cc       jetstream.ConsumeContext
}

// arrival is one event the probe received.
type arrival struct {
	eventID uuid.UUID
	ceTime  time.Time
	at      time.Time
}

func startLagProbe(ctx context.Context, js jetstream.JetStream) (*lagProbe, error) {
	p := &lagProbe{}
	if js == nil {
		return p, nil
	}
	cons, err := js.OrderedConsumer(ctx, events.OrderStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.OrderSubjects},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("lag probe: %w", err)
	}
	p.cc, err = cons.Consume(func(m jetstream.Msg) {
		now := time.Now()
		env, err := events.Decode(m.Headers(), m.Data())
		if err != nil || env.Time.IsZero() {
			return
		}
		id, err := uuid.Parse(env.ID)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.arrivals = append(p.arrivals, arrival{eventID: id, ceTime: env.Time, at: now})
		p.mu.Unlock()
	})
	if err != nil {
		return nil, fmt.Errorf("lag probe: %w", err)
	}
	return p, nil
}

func (p *lagProbe) reset() {
	p.mu.Lock()
	p.arrivals = p.arrivals[:0]
	p.mu.Unlock()
}

// take returns the lags of the events received since the last reset or
// take, and forgets them. recordedAt (nil: none) tells when their outbox
// rows were written; it runs after the round, so it costs the round nothing.
func (p *lagProbe) take(ctx context.Context, recordedAt func(context.Context, []uuid.UUID) (map[uuid.UUID]time.Time, error)) ([]time.Duration, error) {
	p.mu.Lock()
	got := slices.Clone(p.arrivals)
	p.arrivals = p.arrivals[:0]
	p.mu.Unlock()
	var written map[uuid.UUID]time.Time
	if recordedAt != nil && len(got) > 0 {
		ids := make([]uuid.UUID, len(got))
		for i, a := range got {
			ids[i] = a.eventID
		}
		var err error
		if written, err = recordedAt(ctx, ids); err != nil {
			return nil, err
		}
	}
	lags := make([]time.Duration, len(got))
	for i, a := range got {
		from, ok := written[a.eventID]
		if !ok {
			from = a.ceTime
		}
		lags[i] = a.at.Sub(from)
	}
	return lags, nil
}

// stop ends the probe's consumer; stopping again does nothing.
func (p *lagProbe) stop() {
	if p.cc != nil {
		p.cc.Stop()
		p.cc = nil
	}
}
