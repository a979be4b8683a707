package bench

import (
	"time"
)

// Machine describes where a run happened.
type Machine struct {
	Cores           int    `json:"cores"`
	CPU             string `json:"cpu,omitempty"`
	OS              string `json:"os"`
	Go              string `json:"go"`
	TemporalServer  string `json:"temporal_server"`
	TemporalSDK     string `json:"temporal_sdk"`
	Persistence     string `json:"temporal_persistence"`
	PostgreSQL      string `json:"postgresql,omitempty"`
	NATSServer      string `json:"nats_server"`
	PostgresPrivate bool   `json:"postgres_private"`
	// NATSConnection is how the process reached NATS: "in-process" or
	// "tcp".
	NATSConnection string `json:"nats_connection"`
}

// RunConfig is what the run was asked to do.
type RunConfig struct {
	N           int `json:"n"`
	C           int `json:"c"`
	Rounds      int `json:"rounds"`
	Warmup      int `json:"warmup"`
	DrainEvents int `json:"drain_events"`
	// Downstream: the promotions and analytics consumers ran in the
	// process too.
	Downstream bool `json:"downstream"`
	// LogLevel is the level the stack and the service parts logged at.
	LogLevel string `json:"log_level,omitempty"`
	// PGStatements: pg_stat_statements counted every statement
	// (-pg-statements), at some cost in PostgreSQL's CPU.
	PGStatements bool `json:"pg_statements,omitempty"`
}

// RSS is peak resident memory in MiB.
type RSS struct {
	Process  float64 `json:"process"`
	Postgres float64 `json:"postgres,omitempty"`
}

// SystemResult is one system's figures over the rounds.
type SystemResult struct {
	OrdersPerS Spread `json:"orders_per_s"`
	// Place, Accept, Deliver: latency of each call (HTTP for orderflow,
	// SDK for the baselines); Total: place → completed.
	Place   PercentileSpread `json:"place"`
	Accept  PercentileSpread `json:"accept"`
	Deliver PercentileSpread `json:"deliver"`
	Total   PercentileSpread `json:"place_to_completed"`
	// AcceptRetries: accepts refused because the restaurant had not been
	// notified yet, per order.
	AcceptRetries         float64 `json:"accept_retries_per_order"`
	HistoryEventsPerOrder float64 `json:"history_events_per_order"`
	// CPU per order, in milliseconds: this process (Temporal server,
	// worker, API, relay, NATS, consumers all run in it) and the private
	// PostgreSQL.
	CPUProcessMsPerOrder  Spread `json:"cpu_process_ms_per_order"`
	CPUPostgresMsPerOrder Spread `json:"cpu_postgres_ms_per_order"`
	// CPUByPartMsPerOrder splits the process's CPU by the part of the code
	// its profile samples were in (median over the rounds).
	CPUByPartMsPerOrder map[string]float64 `json:"cpu_by_part_ms_per_order"`
	// Postgres is what the system's rounds ran in PostgreSQL, per order
	// (-pg-statements only).
	Postgres *PostgresLoad `json:"postgres_statements,omitempty"`
	// Series is the last round's completions per second, for the plot.
	Series []float64 `json:"throughput_series"`
}

// LagResult is the outbox → consumer lag: idle (one order at a time) and
// during the orderflow rounds.
type LagResult struct {
	Idle   Percentiles      `json:"idle"`
	Loaded PercentileSpread `json:"loaded"`
}

// Result is a whole run. The top-level figures are the ones to quote.
type Result struct {
	OrdersPerS      float64 `json:"orders_per_s"`
	RatioSameShape  float64 `json:"ratio_same_shape"`
	RatioNaive      float64 `json:"ratio_naive"`
	LagP99Ms        float64 `json:"lag_p99_ms"`
	DrainEventsPerS float64 `json:"drain_events_per_s"`

	// Ratios as medians of each round's ratio (the systems of a round run
	// back to back), with min and max.
	RatiosSameShape Spread `json:"ratios_same_shape"`
	RatiosNaive     Spread `json:"ratios_naive"`

	Systems    map[string]*SystemResult `json:"systems"`
	Lag        LagResult                `json:"lag"`
	Drain      Spread                   `json:"drain_events_per_s_rounds"`
	PeakRSSMiB RSS                      `json:"peak_rss_mib"`
	Machine    Machine                  `json:"machine"`
	Config     RunConfig                `json:"config"`
	StartedAt  time.Time                `json:"started_at"`
	Took       string                   `json:"took"`
}

func (res *Result) summarize(rounds map[string][]roundResult) {
	res.Systems = map[string]*SystemResult{}
	for name, rs := range rounds {
		s := &SystemResult{CPUByPartMsPerOrder: map[string]float64{}}
		var rates, cpuSelf, cpuPG, hist []float64
		var place, accept, deliver, total, lag []Percentiles
		parts := map[string][]float64{}
		var statements [][]Statement
		short := 0
		retries, orders := 0, 0
		for _, r := range rs {
			n := float64(len(r.timings))
			rates = append(rates, n/r.elapsed.Seconds())
			cpuSelf = append(cpuSelf, ms(r.cpu.self)/n)
			cpuPG = append(cpuPG, ms(r.cpu.postgres)/n)
			hist = append(hist, r.historyEvents)
			var p, a, d, t []time.Duration
			var done []time.Time
			for _, tm := range r.timings {
				p, a, d, t = append(p, tm.place), append(a, tm.accept), append(d, tm.deliver), append(t, tm.total)
				done = append(done, tm.done)
				retries += tm.acceptRetries
			}
			orders += len(r.timings)
			place, accept, deliver, total = append(place, percentiles(p)), append(accept, percentiles(a)), append(deliver, percentiles(d)), append(total, percentiles(t))
			if len(r.lag) > 0 {
				lag = append(lag, percentiles(r.lag))
			}
			for part, share := range r.shares {
				parts[part] = append(parts[part], share*ms(r.cpu.self)/n)
			}
			s.Series = throughputSeries(r.start, done, time.Second)
			if r.statements != nil {
				statements = append(statements, r.statements)
			}
			if r.statementsShort {
				short++
			}
		}
		if len(statements) > 0 {
			if s.Postgres = postgresLoad(statements, orders); s.Postgres != nil {
				s.Postgres.IncompleteRounds = short
			}
		}
		s.OrdersPerS = spread(rates)
		s.Place, s.Accept, s.Deliver, s.Total = percentileSpread(place), percentileSpread(accept), percentileSpread(deliver), percentileSpread(total)
		s.CPUProcessMsPerOrder, s.CPUPostgresMsPerOrder = spread(cpuSelf), spread(cpuPG)
		s.HistoryEventsPerOrder = spread(hist).Median
		if orders > 0 {
			s.AcceptRetries = float64(retries) / float64(orders)
		}
		for part, v := range parts {
			s.CPUByPartMsPerOrder[part] = round2(spread(v).Median)
		}
		if name == SystemOrderflow && len(lag) > 0 {
			res.Lag.Loaded = percentileSpread(lag)
		}
		res.Systems[name] = s
	}
	of, same, naive := rounds[SystemOrderflow], rounds[SystemSameShape], rounds[SystemNaive]
	var rs, rn []float64
	for i := range of {
		rate := func(r roundResult) float64 { return float64(len(r.timings)) / r.elapsed.Seconds() }
		if i < len(same) {
			rs = append(rs, rate(of[i])/rate(same[i]))
		}
		if i < len(naive) {
			rn = append(rn, rate(of[i])/rate(naive[i]))
		}
	}
	res.RatiosSameShape, res.RatiosNaive = spread(rs), spread(rn)
	if s := res.Systems[SystemOrderflow]; s != nil {
		res.OrdersPerS = round2(s.OrdersPerS.Median)
	}
	res.RatioSameShape, res.RatioNaive = round2(res.RatiosSameShape.Median), round2(res.RatiosNaive.Median)
	res.LagP99Ms = res.Lag.Loaded.P99.Median
	res.DrainEventsPerS = round2(res.Drain.Median)
}

func round2(v float64) float64 {
	if v >= 100 {
		return float64(int64(v + 0.5))
	}
	return float64(int64(v*100+0.5)) / 100
}
