package bench

import (
	"strings"
	"testing"
)

func TestStatementsRunIsAfterMinusBefore(t *testing.T) {
	before := []Statement{
		{Database: "orderflow", QueryID: 1, TopLevel: true, Query: "-- name: ApplyStep :one\nWITH adv AS (...)", Calls: 10, ExecMs: 5, WALRecords: 100, WALBytes: 1000},
		{Database: "orderflow", QueryID: 2, TopLevel: true, Query: "SELECT 1", Calls: 3, ExecMs: 1},
		{Database: "temporal", QueryID: 3, TopLevel: true, Query: "evicted", Calls: 50, ExecMs: 9},
	}
	after := []Statement{
		{Database: "orderflow", QueryID: 1, TopLevel: true, Query: "-- name: ApplyStep :one\nWITH adv AS (...)", Calls: 16, ExecMs: 8, WALRecords: 172, WALBytes: 1900},
		{Database: "orderflow", QueryID: 2, TopLevel: true, Query: "SELECT 1", Calls: 3, ExecMs: 1}, // did not run
		{Database: "orderflow", QueryID: 1, TopLevel: false, Query: "-- name: ApplyStep :one\nWITH adv AS (...)", Calls: 2, ExecMs: 0.5},
		{Database: "temporal", QueryID: 3, TopLevel: true, Query: "evicted", Calls: 4, ExecMs: 1}, // evicted and counted anew
	}
	ran := statementsRun(before, after)
	if len(ran) != 3 {
		t.Fatalf("ran %d statements, want 3: %+v", len(ran), ran)
	}
	want := map[statementKey]Statement{
		{"orderflow", 1, true}:  {Calls: 6, ExecMs: 3, WALRecords: 72, WALBytes: 900},
		{"orderflow", 1, false}: {Calls: 2, ExecMs: 0.5},
		{"temporal", 3, true}:   {Calls: 4, ExecMs: 1},
	}
	for _, s := range ran {
		w, ok := want[s.key()]
		if !ok {
			t.Errorf("unexpected %+v", s)
			continue
		}
		if s.Calls != w.Calls || s.ExecMs != w.ExecMs || s.WALRecords != w.WALRecords || s.WALBytes != w.WALBytes {
			t.Errorf("%+v: want calls %d, exec %v, WAL %d records %v bytes", s, w.Calls, w.ExecMs, w.WALRecords, w.WALBytes)
		}
	}
}

func TestPostgresLoadIsPerOrderByDatabase(t *testing.T) {
	round := func(calls int64) []Statement {
		return []Statement{
			{Database: "orderflow", QueryID: 1, TopLevel: true, Query: "-- name: ApplyStep :one\nWITH adv AS (...)", Calls: 6 * calls, ExecMs: 2 * float64(calls), WALRecords: 70 * calls, WALBytes: 2048 * float64(calls)},
			{Database: "orderflow", QueryID: 9, TopLevel: false, Query: `SELECT 1 FROM ONLY "public"."orders" x WHERE "id" OPERATOR(pg_catalog.=) $1 FOR KEY SHARE OF x`, Calls: 9 * calls, ExecMs: 0.1 * float64(calls), WALRecords: 9 * calls},
			{Database: "temporal", QueryID: 2, TopLevel: true, Query: "INSERT INTO history_node (shard_id, tree_id) VALUES ($1, $2)", Calls: 6 * calls, ExecMs: float64(calls)},
		}
	}
	// Two rounds of 10 and 30 orders; in the second, ApplyStep's calls
	// are counted under two query IDs.
	second := round(30)
	split := second[0]
	split.QueryID, split.Calls, split.ExecMs, split.WALRecords, split.WALBytes = 7, 6*10, 2*10, 70*10, 2048*10
	second[0].Calls, second[0].ExecMs, second[0].WALRecords, second[0].WALBytes = 6*20, 2*20, 70*20, 2048*20
	load := postgresLoad([][]Statement{round(10), append(second, split)}, 40)
	if load == nil || len(load.Databases) != 2 {
		t.Fatalf("load %+v: want two databases", load)
	}
	of, tp := load.Databases[0], load.Databases[1]
	// The nested check's time is in ApplyStep's already: it is not added
	// again.
	if of.Database != "orderflow" || of.Statements != 6 || of.Nested != 9 || of.ExecMs != 2 || of.NestedExecMs != 0.1 || of.WALRecords != 70 || of.WALKiB != 2 {
		t.Errorf("orderflow %+v: want 6 (+9) statements, 2 ms (0.1 nested), 70 WAL records, 2 KiB per order", of)
	}
	if tp.Database != "temporal" || tp.Statements != 6 || tp.Nested != 0 || tp.ExecMs != 1 {
		t.Errorf("temporal %+v: want 6 statements, 1 ms per order", tp)
	}
	if len(load.Top) != 3 || load.Top[0].Statement != "ApplyStep" || load.Top[0].Calls != 6 || load.Top[0].ExecMs != 2 {
		t.Errorf("top %+v: want ApplyStep first, 6 calls and 2 ms per order", load.Top)
	}
	if got := load.Top[2]; got.TopLevel || !strings.HasPrefix(got.Statement, `SELECT 1 FROM ONLY "public"."orders"`) {
		t.Errorf("last %+v: want the nested foreign-key check", got)
	}
	if postgresLoad(nil, 0) != nil || postgresLoad([][]Statement{nil}, 5) != nil {
		t.Error("no orders or no statements must give no load")
	}
}

func TestMarkdownShowsPostgresLoadOnlyWhenMeasured(t *testing.T) {
	res := &Result{Systems: map[string]*SystemResult{SystemOrderflow: {}, SystemSameShape: {}}}
	var md strings.Builder
	Markdown(&md, res)
	if strings.Contains(md.String(), "pg_stat_statements") {
		t.Errorf("a run without -pg-statements mentions them:\n%s", md.String())
	}
	res.Config.PGStatements = true
	res.Systems[SystemOrderflow].Postgres = postgresLoad([][]Statement{{
		{Database: "orderflow", QueryID: 1, TopLevel: true, Query: "-- name: ApplyStep :one", Calls: 60, ExecMs: 20, WALRecords: 700},
	}}, 10)
	res.Systems[SystemSameShape].Postgres = postgresLoad([][]Statement{{
		{Database: "temporal", QueryID: 2, TopLevel: true, Query: "UPDATE executions SET a = $1 | b", Calls: 30, ExecMs: 5},
	}}, 10)
	res.Systems[SystemSameShape].Postgres.IncompleteRounds = 1
	md.Reset()
	Markdown(&md, res)
	out := md.String()
	for _, want := range []string{
		"| orderflow | 6.00 (+0.00) · 2.00 ms (0.00) · 70.0 · 0.00 | – | – |",
		"| temporal | – | 3.00 (+0.00) · 0.50 ms (0.00) · 0.00 · 0.00 | – |",
		"**same-shape: pg_stat_statements evicted entries during 1 of its rounds",
		"| ApplyStep | orderflow | 6.00 | 2.00 | 70.0 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}

func TestStatementNames(t *testing.T) {
	for query, want := range map[string]string{
		"-- name: ApplyStep :one\n-- Applies one step\nWITH adv AS (...)": "ApplyStep",
		"SELECT range_id FROM shards\n  WHERE shard_id = $1":              "SELECT range_id FROM shards WHERE shard_id = $1",
		"INSERT INTO executions_visibility (namespace_id, run_id, workflow_type_name, workflow_id, start_time) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (namespace_id, run_id) DO NOTHING": "INSERT INTO executions_visibility (namespace_id, run_id … mespace_id, run_id) DO NOTHING",
	} {
		if got := statementName(query); got != want {
			t.Errorf("statementName(%q) = %q, want %q", query, got, want)
		}
	}
}
