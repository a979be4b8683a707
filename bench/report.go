package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Files a run writes into its output directory.
const (
	ResultJSON = "result.json"
	ResultMD   = "result.md"
	ResultSVG  = "result.svg"
)

// Write writes the JSON result, the markdown table and the plot into dir.
func Write(dir string, res *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ResultJSON), append(data, '\n'), 0o644); err != nil {
		return err
	}
	var md strings.Builder
	Markdown(&md, res)
	if err := os.WriteFile(filepath.Join(dir, ResultMD), []byte(md.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ResultSVG), []byte(SVG(res)), 0o644)
}

var systemOrder = []string{SystemOrderflow, SystemSameShape, SystemNaive}

func fmtSpread(s Spread, unit string) string {
	if len(s.Rounds) == 0 {
		return "–"
	}
	return fmt.Sprintf("%s%s (%s–%s)", num(s.Median), unit, num(s.Min), num(s.Max))
}

func num(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func fmtPct(p PercentileSpread) string {
	if len(p.P50.Rounds) == 0 {
		return "–"
	}
	return fmt.Sprintf("%s / %s / %s", num(p.P50.Median), num(p.P95.Median), num(p.P99.Median))
}

// Markdown writes the results as markdown tables, the ratios last.
func Markdown(w io.Writer, res *Result) {
	m := res.Machine
	fmt.Fprintf(w, "# orderflow bench, %s\n\n", res.StartedAt.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "%d cores (%s), %s, Go %s, Temporal server %s (persistence: %s), SDK %s, NATS server %s (connection: %s), PostgreSQL %s.  \n",
		m.Cores, m.CPU, m.OS, m.Go, m.TemporalServer, m.Persistence, m.TemporalSDK, m.NATSServer, m.NATSConnection, m.PostgreSQL)
	fmt.Fprintf(w, "%d orders per round and system at concurrency %d, %d rounds (interleaved), %d warm-up orders each; took %s. ",
		res.Config.N, res.Config.C, res.Config.Rounds, res.Config.Warmup, res.Took)
	if res.Config.Downstream {
		fmt.Fprintf(w, "The promotions and analytics consumers ran in the process too (-downstream). ")
	} else {
		fmt.Fprintf(w, "orderflow here is the order context: API, worker, relay, NATS, the inbound delivery consumer and the bench's lag probe; the promotions and analytics consumers ran elsewhere (not at all; -downstream adds them). ")
	}
	if res.Config.LogLevel != "" {
		fmt.Fprintf(w, "The service parts logged at %s. ", res.Config.LogLevel)
	}
	if res.Config.PGStatements {
		fmt.Fprintf(w, "PostgreSQL counted every statement with pg_stat_statements (-pg-statements), which costs it some CPU: compare its throughputs with runs without it only through the ratios. ")
	}
	fmt.Fprintf(w, "Figures are the median of the rounds, (min–max) where shown; latencies are p50 / p95 / p99 in ms, each the median over the rounds.\n\n")

	fmt.Fprintf(w, "| | orderflow (HTTP API) | same-shape baseline | naive baseline |\n|---|---|---|---|\n")
	row := func(label string, f func(s *SystemResult) string) {
		cells := []string{label}
		for _, name := range systemOrder {
			if s := res.Systems[name]; s != nil {
				cells = append(cells, f(s))
			} else {
				cells = append(cells, "–")
			}
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	row("completed orders/s", func(s *SystemResult) string { return fmtSpread(s.OrdersPerS, "") })
	row("place (POST / start), ms", func(s *SystemResult) string { return fmtPct(s.Place) })
	row("accept (POST / Update / signal), ms", func(s *SystemResult) string { return fmtPct(s.Accept) })
	row("delivered → completed, ms", func(s *SystemResult) string { return fmtPct(s.Deliver) })
	row("place → completed, ms", func(s *SystemResult) string { return fmtPct(s.Total) })
	row("accept retries per order (not yet notified)", func(s *SystemResult) string { return num(s.AcceptRetries) })
	row("Temporal history events per order", func(s *SystemResult) string { return num(s.HistoryEventsPerOrder) })
	row("CPU ms per order, this process", func(s *SystemResult) string { return fmtSpread(s.CPUProcessMsPerOrder, "") })
	row("CPU ms per order, PostgreSQL", func(s *SystemResult) string { return fmtSpread(s.CPUPostgresMsPerOrder, "") })

	fmt.Fprintf(w, "\nCPU ms per order by part of the process (from a CPU profile of each round; \"runtime and other\" is GC, scheduler and syscalls shared by all parts):\n\n")
	var parts []string
	for _, s := range res.Systems {
		for p := range s.CPUByPartMsPerOrder {
			if !slices.Contains(parts, p) {
				parts = append(parts, p)
			}
		}
	}
	slices.Sort(parts)
	fmt.Fprintf(w, "| part | orderflow | same-shape | naive |\n|---|---|---|---|\n")
	for _, p := range parts {
		cells := []string{p}
		for _, name := range systemOrder {
			if s := res.Systems[name]; s != nil {
				cells = append(cells, num(s.CPUByPartMsPerOrder[p]))
			} else {
				cells = append(cells, "–")
			}
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}

	postgresTables(w, res)

	fmt.Fprintf(w, "\n| outbox and bus | |\n|---|---|\n")
	fmt.Fprintf(w, "| commit → consumer lag, idle (p50 / p95 / p99 ms) | %s / %s / %s (%d events) |\n", num(res.Lag.Idle.P50), num(res.Lag.Idle.P95), num(res.Lag.Idle.P99), res.Lag.Idle.N)
	fmt.Fprintf(w, "| commit → consumer lag, during the orderflow rounds (p50 / p95 / p99 ms) | %s |\n", fmtPct(res.Lag.Loaded))
	fmt.Fprintf(w, "| relay drain of a %d-event backlog, events/s | %s |\n", res.Config.DrainEvents, fmtSpread(res.Drain, ""))
	fmt.Fprintf(w, "| peak RSS, MiB | process %s, PostgreSQL %s |\n", num(res.PeakRSSMiB.Process), num(res.PeakRSSMiB.Postgres))

	fmt.Fprintf(w, "\n| ratio (per-round, median (min–max)) | |\n|---|---|\n")
	fmt.Fprintf(w, "| orderflow ÷ same-shape | **%s** (%s–%s) |\n", num(res.RatiosSameShape.Median), num(res.RatiosSameShape.Min), num(res.RatiosSameShape.Max))
	fmt.Fprintf(w, "| orderflow ÷ naive | **%s** (%s–%s) |\n", num(res.RatiosNaive.Median), num(res.RatiosNaive.Min), num(res.RatiosNaive.Max))
}

// SVG draws two panels: completions per second over the last round of
// each system, and the place → completed latency percentiles.
func SVG(res *Result) string {
	const (
		w, h         = 960, 420
		panelW       = 560
		left, top    = 60, 40
		plotH        = 300
		rightPanelX0 = 680
	)
	colors := map[string]string{SystemOrderflow: "#1f77b4", SystemSameShape: "#2ca02c", SystemNaive: "#d62728"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="14" font-weight="bold">Completed orders per second (last round, %d orders at concurrency %d)</text>`+"\n", left, res.Config.N, res.Config.C)

	// Left panel: throughput over time.
	maxY, maxX := 1.0, 1
	for _, s := range res.Systems {
		for _, v := range s.Series {
			maxY = math.Max(maxY, v)
		}
		maxX = max(maxX, len(s.Series))
	}
	maxY = niceCeil(maxY)
	x := func(i int) float64 { return left + float64(i)*float64(panelW-left)/float64(maxX) }
	y := func(v float64) float64 { return top + plotH - v/maxY*plotH }
	axes(&b, left, top, panelW, plotH, maxY, fmt.Sprintf("seconds (0–%d)", maxX), "orders/s")
	for i, name := range systemOrder {
		s := res.Systems[name]
		if s == nil || len(s.Series) == 0 {
			continue
		}
		var pts []string
		for j, v := range s.Series {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(j)+0.5*float64(panelW-left)/float64(maxX), y(v)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", colors[name], strings.Join(pts, " "))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s: %s/s median</text>`+"\n",
			left+10, top+8+i*18, colors[name], left+28, top+18+i*18, name, num(s.OrdersPerS.Median))
	}

	// Right panel: latency percentiles of place → completed.
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="14" font-weight="bold">place → completed latency, ms</text>`+"\n", rightPanelX0)
	maxL := 1.0
	for _, s := range res.Systems {
		maxL = math.Max(maxL, s.Total.P99.Median)
	}
	maxL = niceCeil(maxL)
	px0, pw := rightPanelX0+40, w-rightPanelX0-60
	axes(&b, px0, top, px0+pw, plotH, maxL, "p50 · p95 · p99", "ms")
	groupW := float64(pw) / 3
	for gi, label := range []string{"p50", "p95", "p99"} {
		for si, name := range systemOrder {
			s := res.Systems[name]
			if s == nil {
				continue
			}
			v := []float64{s.Total.P50.Median, s.Total.P95.Median, s.Total.P99.Median}[gi]
			bw := groupW / 4
			bx := float64(px0) + float64(gi)*groupW + bw*0.5 + float64(si)*bw
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s ms</title></rect>`+"\n",
				bx, top+plotH-v/maxL*plotH, bw*0.9, v/maxL*plotH, colors[name], name, label, num(v))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", float64(px0)+float64(gi)*groupW+groupW/2, top+plotH+16, label)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#444">ratios (per-round medians): orderflow ÷ same-shape %s, orderflow ÷ naive %s; relay drain %s events/s; lag p99 %s ms</text>`+"\n",
		left, h-16, num(res.RatioSameShape), num(res.RatioNaive), num(res.DrainEventsPerS), num(res.LagP99Ms))
	b.WriteString("</svg>\n")
	return b.String()
}

func axes(b *strings.Builder, x0, top, x1, plotH int, maxY float64, xLabel, yLabel string) {
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, top+plotH, x1, top+plotH)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, top, x0, top+plotH)
	for i := 0; i <= 4; i++ {
		v := maxY * float64(i) / 4
		yy := float64(top+plotH) - float64(i)*float64(plotH)/4
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0, yy, x1, yy, x0-4, yy+4, num(v))
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", (x0+x1)/2, top+plotH+32, xLabel)
	fmt.Fprintf(b, `<text x="%d" y="%d" transform="rotate(-90 %d %d)" text-anchor="middle">%s</text>`+"\n", x0-40, top+plotH/2, x0-40, top+plotH/2, yLabel)
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// postgresTables writes, for a run with -pg-statements, each system's
// PostgreSQL work per order by database, and the costliest statements of
// orderflow's rounds.
func postgresTables(w io.Writer, res *Result) {
	var dbs []string
	for _, s := range res.Systems {
		if s.Postgres == nil {
			continue
		}
		for _, d := range s.Postgres.Databases {
			if !slices.Contains(dbs, d.Database) {
				dbs = append(dbs, d.Database)
			}
		}
	}
	if len(dbs) == 0 {
		return
	}
	slices.Sort(dbs)
	fmt.Fprintf(w, "\nPostgreSQL work per order by database, over all rounds (pg_stat_statements): statements (+ those run inside them, such as foreign-key checks) · execution ms (of which in the nested ones) · WAL records · WAL KiB. Execution time leaves out parsing, commits, the client protocol and the server's background work, which PostgreSQL's CPU above includes:\n\n")
	for _, name := range systemOrder {
		if s := res.Systems[name]; s != nil && s.Postgres != nil && s.Postgres.IncompleteRounds > 0 {
			fmt.Fprintf(w, "**%s: pg_stat_statements evicted entries during %d of its rounds, so its counts are short** (raise pg_stat_statements.max).\n\n", name, s.Postgres.IncompleteRounds)
		}
	}
	fmt.Fprintf(w, "| database | orderflow | same-shape | naive |\n|---|---|---|---|\n")
	for _, db := range dbs {
		cells := []string{db}
		for _, name := range systemOrder {
			cell := "–"
			if s := res.Systems[name]; s != nil && s.Postgres != nil {
				for _, d := range s.Postgres.Databases {
					if d.Database == db {
						cell = fmt.Sprintf("%s (+%s) · %s ms (%s) · %s · %s", num(d.Statements), num(d.Nested), num(d.ExecMs), num(d.NestedExecMs), num(d.WALRecords), num(d.WALKiB))
					}
				}
			}
			cells = append(cells, cell)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	of := res.Systems[SystemOrderflow]
	if of == nil || of.Postgres == nil || len(of.Postgres.Top) == 0 {
		return
	}
	fmt.Fprintf(w, "\nThe costliest statements of orderflow's rounds, in every database, per order:\n\n| statement | database | calls | execution ms | WAL records |\n|---|---|---|---|---|\n")
	for _, st := range of.Postgres.Top {
		name := st.Statement
		if !st.TopLevel {
			name += " (nested)"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", strings.ReplaceAll(name, "|", "\\|"), st.Database, num(st.Calls), num(st.ExecMs), num(st.WALRecords))
	}
}
