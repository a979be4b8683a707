package tests_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orderflow/orderflow/bench"
	"github.com/orderflow/orderflow/tests/apptest"
	"github.com/orderflow/orderflow/tests/stacktest"
)

// TestBenchSmoke runs `orderflow bench` at N=20, so that the command keeps
// working, with -pg-statements so that its PostgreSQL accounting does too.
// It checks that every figure was measured and written, not how fast
// anything was: the bench is never a timed test.
func TestBenchSmoke(t *testing.T) {
	if err := stacktest.Prerequisites(); err != nil {
		t.Fatal(err)
	}
	bin, err := apptest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	// A bound on a hang, not on speed: the smoke takes well under a minute.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench", "-n", "20", "-c", "5", "-rounds", "1", "-warmup", "2", "-drain", "500", "-pg-statements", "-out", out)
	// Its own embedded stack, whatever DATABASE_URL, NATS_URL or
	// TEMPORAL_ADDRESS the caller has set: the drain writes made-up events.
	cmd.Env = append(apptest.Environ(), "ORDERFLOW_DATA_DIR="+stacktest.TempDir(t), "ORDERFLOW_LOG_LEVEL=warn")
	// The bench and its PostgreSQL die with the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	began := time.Now()
	output, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("orderflow bench: %v\n%s", err, output)
	}
	t.Logf("orderflow bench -n 20 took %s", time.Since(began).Round(time.Second))
	if !strings.Contains(string(output), "orderflow ÷ same-shape") {
		t.Errorf("the printed table lacks the ratios:\n%s", output)
	}
	for _, f := range []string{bench.ResultJSON, bench.ResultMD, bench.ResultSVG} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	data, err := os.ReadFile(filepath.Join(out, bench.ResultJSON))
	if err != nil {
		t.Fatal(err)
	}
	var res bench.Result
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatalf("result.json: %v", err)
	}
	if res.OrdersPerS <= 0 || res.RatioSameShape <= 0 || res.RatioNaive <= 0 || res.DrainEventsPerS <= 0 || res.LagP99Ms <= 0 {
		t.Errorf("top-level figures missing: orders_per_s %v ratio_same_shape %v ratio_naive %v drain %v lag_p99 %v",
			res.OrdersPerS, res.RatioSameShape, res.RatioNaive, res.DrainEventsPerS, res.LagP99Ms)
	}
	for _, name := range []string{bench.SystemOrderflow, bench.SystemSameShape, bench.SystemNaive} {
		s := res.Systems[name]
		if s == nil || s.OrdersPerS.Median <= 0 || s.HistoryEventsPerOrder <= 0 || s.Total.P50.Median <= 0 {
			t.Errorf("system %s not measured: %+v", name, s)
		}
	}
	if res.Machine.Cores == 0 || res.Machine.TemporalServer == "" {
		t.Errorf("machine description incomplete: %+v", res.Machine)
	}
	checkPostgresLoad(t, &res)
	// The bench runs the embedded NATS, which the process reaches
	// in-process, as orderflow dev does.
	if res.Machine.NATSConnection != "in-process" {
		t.Errorf("nats connection %q; want in-process", res.Machine.NATSConnection)
	}
}

// checkPostgresLoad checks what -pg-statements counted: orderflow's rounds
// ran the order steps in its database, with their foreign-key checks
// nested, and every system's rounds ran Temporal's statements in both of
// Temporal's databases.
func checkPostgresLoad(t *testing.T, res *bench.Result) {
	t.Helper()
	if !res.Config.PGStatements {
		t.Error("result.json does not record -pg-statements")
	}
	perDB := func(system, database string) bench.DatabaseLoad {
		if s := res.Systems[system]; s != nil && s.Postgres != nil {
			if s.Postgres.IncompleteRounds > 0 {
				t.Errorf("%s: pg_stat_statements evicted entries during %d rounds", system, s.Postgres.IncompleteRounds)
			}
			for _, d := range s.Postgres.Databases {
				if d.Database == database {
					return d
				}
			}
		}
		return bench.DatabaseLoad{}
	}
	for _, name := range []string{bench.SystemOrderflow, bench.SystemSameShape, bench.SystemNaive} {
		for _, database := range []string{"temporal", "temporal_visibility"} {
			if d := perDB(name, database); d.Statements <= 0 || d.ExecMs <= 0 || d.WALRecords <= 0 {
				t.Errorf("%s: no statements in %s: %+v", name, database, d)
			}
		}
	}
	// An order on the happy path takes 16 statements in orderflow's
	// database (docs/PERFORMANCE.md), the relay's claims and marks on top.
	of, same := perDB(bench.SystemOrderflow, "orderflow"), perDB(bench.SystemSameShape, "orderflow")
	if of.Statements < 16 || of.Nested <= 0 || of.NestedExecMs <= 0 || of.WALRecords <= 0 {
		t.Errorf("orderflow's rounds ran %+v in orderflow's database: want at least 16 statements per order, with nested foreign-key checks, and WAL", of)
	}
	if same.Statements >= of.Statements/2 {
		t.Errorf("same-shape's rounds ran %+v in orderflow's database, orderflow's %+v", same, of)
	}
}
