package devserver_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/temporal/devserver"
)

// The benchmark's knobs. A round is benchN workflows at benchC at a time;
// -benchtime=3x gives three rounds per mode and pass, after one warm-up
// round of benchWarmup workflows that is not measured.
var (
	benchN      = flag.Int("persist.n", 300, "BenchmarkPersistence: workflows per round")
	benchC      = flag.Int("persist.c", 50, "BenchmarkPersistence: workflows in flight at once")
	benchWarmup = flag.Int("persist.warmup", 50, "BenchmarkPersistence: workflows of the unmeasured warm-up round")
	benchIdle   = flag.Duration("persist.idle", 10*time.Second, "BenchmarkPersistence: how long to measure the idle server's CPU after the rounds")
	benchPasses = flag.Int("persist.passes", 3, "BenchmarkPersistence: passes over all modes")
	benchQuiet  = flag.Float64("persist.quiet", 15, "BenchmarkPersistence: a round is quiet when other processes used less CPU than this, in % of one core")
)

// Update names of the order-shaped workflow.
const (
	updateAccept    = "accept"
	updateDelivered = "delivered"
)

// orderShaped has the Temporal commands of an order without its business:
// 3 local activities, an accept Update that cancels the accept timer, 3
// local activities, a delivered Update that cancels the delivery timer
// started on acceptance, 1 local activity. The activities do nothing.
func orderShaped(ctx workflow.Context) error {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 10 * time.Second})
	step := func(n int) error {
		for range n {
			if err := workflow.ExecuteLocalActivity(lctx, noop).Get(lctx, nil); err != nil {
				return err
			}
		}
		return nil
	}
	acceptCtx, cancelAcceptTimer := workflow.WithCancel(ctx)
	acceptTimer := workflow.NewTimer(acceptCtx, time.Hour)
	var deliveryTimer workflow.Future
	var cancelDeliveryTimer workflow.CancelFunc = func() {}
	stage, accepted, delivered := 0, false, false
	handler := func(want int, done *bool, cancel *workflow.CancelFunc) func(workflow.Context) error {
		return func(ctx workflow.Context) error {
			// An Update that arrives before its step waits for it, so every
			// run has the same command sequence.
			if err := workflow.Await(ctx, func() bool { return stage >= want }); err != nil {
				return err
			}
			*done = true
			(*cancel)()
			return nil
		}
	}
	if err := workflow.SetUpdateHandler(ctx, updateAccept, handler(1, &accepted, &cancelAcceptTimer)); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandler(ctx, updateDelivered, handler(2, &delivered, &cancelDeliveryTimer)); err != nil {
		return err
	}
	if err := step(3); err != nil {
		return err
	}
	stage = 1
	if err := workflow.Await(ctx, func() bool { return accepted || acceptTimer.IsReady() }); err != nil {
		return err
	}
	if !accepted {
		return errors.New("accept timer fired")
	}
	deliveryCtx, cancel := workflow.WithCancel(ctx)
	deliveryTimer, cancelDeliveryTimer = workflow.NewTimer(deliveryCtx, time.Hour), cancel
	if err := step(3); err != nil {
		return err
	}
	stage = 2
	if err := workflow.Await(ctx, func() bool { return delivered || deliveryTimer.IsReady() }); err != nil {
		return err
	}
	if !delivered {
		return errors.New("delivery timer fired")
	}
	if err := step(1); err != nil {
		return err
	}
	return workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
}

func noop(context.Context) error { return nil }

// BenchmarkPersistence runs the order-shaped workflow on the embedded
// server over each persistence: SQLite in its three journal/sync modes (and
// WAL+NORMAL with 4 shards) and PostgreSQL (fsync and synchronous_commit on,
// as `orderflow dev` runs it) with 1, 4 and 8 history shards. Server,
// worker and client share this process, as in `orderflow dev`. Run it alone:
//
//	go test ./temporal/devserver/ -run '^$' -bench BenchmarkPersistence -benchtime 3x -timeout 90m
//
// A pass starts a fresh server for every mode in turn and runs -benchtime
// rounds on each; -persist.passes passes interleave the modes in time, so
// that a busy neighbour on a shared machine does not hit one mode only.
// Each sub-benchmark reports completed workflows/s (median of its rounds,
// with min and max), CPU ms per workflow of this process and of
// PostgreSQL's processes, and the CPU the idle server then uses (% of one
// core). Every round is logged with the CPU other processes used meanwhile
// (others, % of one core), and a summary over all passes ends the output:
// per mode the median, min and max of every round, and the median of the
// quiet rounds (others below -persist.quiet).
func BenchmarkPersistence(b *testing.B) {
	sqlite := func(journal, sync string, shards int32) func(b *testing.B) devserver.Config {
		return func(b *testing.B) devserver.Config {
			return devserver.Config{Persistence: devserver.SQLite, DataDir: b.TempDir(), SQLiteJournal: journal, SQLiteSync: sync, NumHistoryShards: shards}
		}
	}
	postgres := func(shards int32) func(b *testing.B) devserver.Config {
		return func(b *testing.B) devserver.Config {
			return devserver.Config{Persistence: devserver.Postgres, PostgresURL: startPostgres(b, true).URL(), NumHistoryShards: shards}
		}
	}
	modes := []struct {
		name string
		cfg  func(b *testing.B) devserver.Config
	}{
		{"sqlite-delete-full-1", sqlite(devserver.JournalDelete, devserver.SyncFull, 1)},
		{"sqlite-wal-full-1", sqlite(devserver.JournalWAL, devserver.SyncFull, 1)},
		{"sqlite-wal-normal-1", sqlite(devserver.JournalWAL, devserver.SyncNormal, 1)},
		{"sqlite-wal-normal-4", sqlite(devserver.JournalWAL, devserver.SyncNormal, 4)},
		{"postgres-1", postgres(1)},
		{"postgres-4", postgres(4)},
		{"postgres-8", postgres(8)},
	}
	all := map[string][]round{}
	for pass := 1; pass <= *benchPasses; pass++ {
		for _, m := range modes {
			b.Run(m.name, func(b *testing.B) {
				srv := startServer(b, m.cfg(b))
				c := dial(b, srv)
				w := worker.New(c, taskQueue, worker.Options{})
				w.RegisterWorkflow(orderShaped)
				w.RegisterActivity(noop)
				if err := w.Start(); err != nil {
					b.Fatalf("start worker: %v", err)
				}
				defer w.Stop()
				var seq atomic.Int64
				if _, err := benchRound(c, &seq, *benchWarmup, *benchC); err != nil {
					b.Fatalf("warm-up: %v", err)
				}
				var rounds []round
				for b.Loop() {
					before := takeCPU()
					elapsed, err := benchRound(c, &seq, *benchN, *benchC)
					if err != nil {
						b.Fatal(err)
					}
					r := newRound(*benchN, elapsed, before, takeCPU())
					rounds = append(rounds, r)
					b.Logf("pass %d round %d: %d workflows in %s: %.1f/s; CPU per workflow %.1f ms here + %.1f ms postgres; others %.0f%%",
						pass, len(rounds), *benchN, elapsed.Round(time.Millisecond), r.rate, r.selfMS, r.pgMS, r.othersPct)
				}
				// What the server costs while nothing runs: shard timers,
				// queue and membership polling, more with more shards.
				b.StopTimer()
				before := takeCPU()
				time.Sleep(*benchIdle)
				after := takeCPU()
				b.ReportMetric(100*float64(after.self-before.self+after.pg-before.pg)/float64(*benchIdle), "idle-cpu-%")
				rates := field(rounds, func(r round) float64 { return r.rate })
				b.ReportMetric(median(rates), "wf/s")
				b.ReportMetric(slices.Min(rates), "wf/s-min")
				b.ReportMetric(slices.Max(rates), "wf/s-max")
				b.ReportMetric(median(field(rounds, func(r round) float64 { return r.selfMS })), "cpu-ms/wf")
				b.ReportMetric(median(field(rounds, func(r round) float64 { return r.pgMS })), "pg-cpu-ms/wf")
				all[m.name] = append(all[m.name], rounds...)
			})
		}
	}
	var sum strings.Builder
	fmt.Fprintf(&sum, "summary over %d passes (workflows/s; CPU ms per workflow, this process + postgres):\n", *benchPasses)
	fmt.Fprintf(&sum, "%-22s %6s %6s %6s %7s %14s %s\n", "mode", "median", "min", "max", "rounds", "cpu ms/wf", "quiet median (rounds)")
	for _, m := range modes {
		rs := all[m.name]
		if len(rs) == 0 {
			continue
		}
		rates := field(rs, func(r round) float64 { return r.rate })
		var quiet []float64
		for _, r := range rs {
			if r.othersPct < *benchQuiet {
				quiet = append(quiet, r.rate)
			}
		}
		q := "-"
		if len(quiet) > 0 {
			q = fmt.Sprintf("%.1f (%d)", median(quiet), len(quiet))
		}
		fmt.Fprintf(&sum, "%-22s %6.1f %6.1f %6.1f %7d %6.1f + %5.1f %s\n", m.name, median(rates), slices.Min(rates), slices.Max(rates), len(rs),
			median(field(rs, func(r round) float64 { return r.selfMS })), median(field(rs, func(r round) float64 { return r.pgMS })), q)
	}
	// b.Log of a benchmark with sub-benchmarks is not shown; stdout is.
	fmt.Print(sum.String())
}

// round is one measured round.
type round struct {
	rate         float64 // completed workflows/s
	selfMS, pgMS float64 // CPU ms per workflow: this process, PostgreSQL
	othersPct    float64 // CPU other processes used meanwhile, % of one core
}

func newRound(n int, elapsed time.Duration, before, after cpuSample) round {
	self, pg := after.self-before.self, after.pg-before.pg
	others := after.machine - before.machine - self - pg
	return round{
		rate:      float64(n) / elapsed.Seconds(),
		selfMS:    float64(self.Milliseconds()) / float64(n),
		pgMS:      float64(pg.Milliseconds()) / float64(n),
		othersPct: max(0, 100*float64(others)/float64(elapsed)),
	}
}

func field(rs []round, f func(round) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

// cpuSample is the CPU time used so far by this process, by the
// PostgreSQL servers it started, and by the whole machine.
type cpuSample struct{ self, pg, machine time.Duration }

func takeCPU() cpuSample { return cpuSample{self: selfCPU(), pg: postgresCPU(), machine: machineCPU()} }

// machineCPU is the busy (not idle, not iowait) time of all CPUs, from
// /proc/stat, in clock ticks of 1/100 s.
func machineCPU() time.Duration {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		// user nice system idle iowait irq softirq steal guest guest_nice;
		// guest time is already counted in user.
		if i == 3 || i == 4 || i >= 8 {
			continue
		}
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond
}

// benchRound runs n order-shaped workflows, c at a time, each driven
// through its two Updates to completion, and returns how long they took.
func benchRound(c client.Client, seq *atomic.Int64, n, conc int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	began := time.Now()
	for range conc {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := driveOne(ctx, c, fmt.Sprintf("bench-%d", seq.Add(1))); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(began), firstErr
}

func driveOne(ctx context.Context, c client.Client, id string) error {
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: taskQueue}, orderShaped)
	if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	for _, name := range []string{updateAccept, updateDelivered} {
		h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			WorkflowID: id, RunID: run.GetRunID(), UpdateName: name, WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		if err != nil {
			return fmt.Errorf("update %s %s: %w", id, name, err)
		}
		if err := h.Get(ctx, nil); err != nil {
			return fmt.Errorf("update %s %s: %w", id, name, err)
		}
	}
	if err := run.Get(ctx, nil); err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	return nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// selfCPU is the user+system CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// postgresCPU is the CPU time used so far by the PostgreSQL servers this
// process started and their backends (living ones: the pools keep theirs).
func postgresCPU() time.Duration {
	type proc struct {
		ppid int
		comm string
		cpu  time.Duration
	}
	procs := map[int]proc{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15), in clock ticks of
		// 1/100 s on Linux.
		s := string(raw)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < 0 {
			continue
		}
		f := strings.Fields(s[end+2:])
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		procs[pid] = proc{ppid: ppid, comm: s[open+1 : end], cpu: time.Duration(ut+st) * 10 * time.Millisecond}
	}
	var total time.Duration
	me := os.Getpid()
	for pid, p := range procs {
		if p.ppid == me && p.comm == "postgres" {
			total += p.cpu
			for _, child := range procs {
				if child.ppid == pid {
					total += child.cpu
				}
			}
		}
	}
	return total
}
