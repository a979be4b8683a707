package bench

import (
	"cmp"
	"regexp"
	"slices"
	"strings"
)

// Statement is what PostgreSQL's pg_stat_statements had counted for one
// statement in one database when it was read, over all the roles that ran
// it. The bench reads them before and after each round and charges the
// difference to the round's system: the statements every part of the
// system ran, the Temporal server's included.
type Statement struct {
	Database string
	QueryID  int64
	// TopLevel is false for a statement run inside another one, such as a
	// foreign key's check; only top-level statements are round trips.
	TopLevel   bool
	Query      string
	Calls      int64
	ExecMs     float64
	WALRecords int64
	WALBytes   float64
}

// StatementCounts is one reading of pg_stat_statements.
type StatementCounts struct {
	Statements []Statement
	// Deallocations counts the times pg_stat_statements evicted entries
	// to make room (pg_stat_statements_info.dealloc): between two readings
	// with different counts, some statements went uncounted.
	Deallocations int64
}

type statementKey struct {
	database string
	queryID  int64
	topLevel bool
}

func (s Statement) key() statementKey { return statementKey{s.Database, s.QueryID, s.TopLevel} }

// statementsRun is what ran between two readings: after minus before, for
// the statements that ran at all meanwhile.
func statementsRun(before, after []Statement) []Statement {
	prev := make(map[statementKey]Statement, len(before))
	for _, s := range before {
		prev[s.key()] = s
	}
	var ran []Statement
	for _, s := range after {
		p := prev[s.key()]
		d := s
		d.Calls -= p.Calls
		d.ExecMs -= p.ExecMs
		d.WALRecords -= p.WALRecords
		d.WALBytes -= p.WALBytes
		// An entry pg_stat_statements evicted and counted anew meanwhile
		// has fewer calls than before: all of its calls are new.
		if d.Calls < 0 {
			d = s
		}
		if d.Calls > 0 {
			ran = append(ran, d)
		}
	}
	return ran
}

// PostgresLoad is a system's PostgreSQL work per order, from
// pg_stat_statements over all its rounds (-pg-statements).
type PostgresLoad struct {
	// IncompleteRounds are rounds during which pg_stat_statements evicted
	// entries: their counts are short by what it dropped.
	IncompleteRounds int            `json:"incomplete_rounds,omitempty"`
	Databases        []DatabaseLoad `json:"databases"`
	// Top are the statements that took the most execution time.
	Top []StatementLoad `json:"top_statements"`
}

// DatabaseLoad is one database's part of it, per order.
type DatabaseLoad struct {
	Database string `json:"database"`
	// Statements are top-level statements (each a round trip from a
	// client); Nested those they ran, such as foreign-key checks.
	Statements float64 `json:"statements_per_order"`
	Nested     float64 `json:"nested_statements_per_order"`
	// ExecMs, WALRecords and WALKiB are the top-level statements', which
	// include what their nested ones took; NestedExecMs is that part.
	ExecMs       float64 `json:"exec_ms_per_order"`
	NestedExecMs float64 `json:"nested_exec_ms_per_order"`
	WALRecords   float64 `json:"wal_records_per_order"`
	WALKiB       float64 `json:"wal_kib_per_order"`
}

// StatementLoad is one statement's part, per order.
type StatementLoad struct {
	Statement  string  `json:"statement"`
	Database   string  `json:"database"`
	TopLevel   bool    `json:"top_level"`
	Calls      float64 `json:"calls_per_order"`
	ExecMs     float64 `json:"exec_ms_per_order"`
	WALRecords float64 `json:"wal_records_per_order"`
}

// topStatements is how many statements PostgresLoad.Top keeps.
const topStatements = 12

// postgresLoad sums what the rounds ran and divides it by their orders.
// A nested statement's time and WAL are also in the statement that ran
// it, so the databases' totals take only the top-level ones'.
func postgresLoad(rounds [][]Statement, orders int) *PostgresLoad {
	if orders == 0 {
		return nil
	}
	n := float64(orders)
	dbs := map[string]*DatabaseLoad{}
	// Statements are summed by their text: one text can be counted under
	// two query IDs (seen for two of orderflow's, in one run of three).
	type textKey struct {
		database, query string
		topLevel        bool
	}
	stmts := map[textKey]*StatementLoad{}
	for _, ran := range rounds {
		for _, s := range ran {
			d := dbs[s.Database]
			if d == nil {
				d = &DatabaseLoad{Database: s.Database}
				dbs[s.Database] = d
			}
			if s.TopLevel {
				d.Statements += float64(s.Calls) / n
				d.ExecMs += s.ExecMs / n
				d.WALRecords += float64(s.WALRecords) / n
				d.WALKiB += s.WALBytes / 1024 / n
			} else {
				d.Nested += float64(s.Calls) / n
				d.NestedExecMs += s.ExecMs / n
			}
			tk := textKey{s.Database, s.Query, s.TopLevel}
			st := stmts[tk]
			if st == nil {
				st = &StatementLoad{Statement: statementName(s.Query), Database: s.Database, TopLevel: s.TopLevel}
				stmts[tk] = st
			}
			st.Calls += float64(s.Calls) / n
			st.ExecMs += s.ExecMs / n
			st.WALRecords += float64(s.WALRecords) / n
		}
	}
	if len(dbs) == 0 {
		return nil
	}
	load := &PostgresLoad{}
	for _, d := range dbs {
		d.Statements, d.Nested, d.ExecMs, d.NestedExecMs = round2(d.Statements), round2(d.Nested), round2(d.ExecMs), round2(d.NestedExecMs)
		d.WALRecords, d.WALKiB = round2(d.WALRecords), round2(d.WALKiB)
		load.Databases = append(load.Databases, *d)
	}
	slices.SortFunc(load.Databases, func(a, b DatabaseLoad) int { return cmp.Compare(a.Database, b.Database) })
	for _, st := range stmts {
		st.Calls, st.ExecMs, st.WALRecords = round2(st.Calls), round2(st.ExecMs), round2(st.WALRecords)
		load.Top = append(load.Top, *st)
	}
	slices.SortFunc(load.Top, func(a, b StatementLoad) int {
		return cmp.Or(cmp.Compare(b.ExecMs, a.ExecMs), cmp.Compare(b.Calls, a.Calls), cmp.Compare(a.Statement, b.Statement))
	})
	load.Top = load.Top[:min(len(load.Top), topStatements)]
	return load
}

var (
	sqlcName = regexp.MustCompile(`--\s*name:\s*(\w+)`)
	spaces   = regexp.MustCompile(`\s+`)
)

// statementName names a statement for the tables: sqlc's name for one of
// orderflow's queries, else its text, the middle of a long one left out.
func statementName(query string) string {
	if m := sqlcName.FindStringSubmatch(query); m != nil {
		return m[1]
	}
	q := []rune(strings.TrimSpace(spaces.ReplaceAllString(query, " ")))
	if len(q) > 90 {
		return string(q[:55]) + " … " + string(q[len(q)-30:])
	}
	return string(q)
}
