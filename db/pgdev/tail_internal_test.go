package pgdev

import (
	"strings"
	"testing"
)

// TestTailOfSkipsRefusals: the FATAL with which a server in recovery turns
// away waitReady's probe, logged after the PANIC that stopped it, is not
// taken for the cause. A make test run failed TestABindLogLineIsNotTheCause
// on exactly that log.
func TestTailOfSkipsRefusals(t *testing.T) {
	log := strings.Join([]string{
		`2026-12-03 08:41:40.505 UTC [26247] LOG:  starting PostgreSQL 15.14`,
		`2026-12-03 08:41:40.506 UTC [26247] LOG:  could not bind IPv4 address "127.0.0.2": Address already in use`,
		`2026-12-03 08:41:40.509 UTC [26250] LOG:  invalid primary checkpoint record`,
		`2026-12-03 08:41:40.509 UTC [26250] PANIC:  could not locate a valid checkpoint record`,
		`2026-12-03 08:41:40.510 UTC [26251] FATAL:  the database system is in recovery mode`,
		`2026-12-03 08:41:40.518 UTC [26247] LOG:  startup process (PID 26250) was terminated by signal 6: Aborted`,
		`2026-12-03 08:41:40.518 UTC [26247] LOG:  shutting down due to startup process failure`,
	}, "\n")
	got := tailOf(log)
	if !strings.HasPrefix(got, "2026-12-03 08:41:40.509 UTC [26250] PANIC:  could not locate a valid checkpoint record") {
		t.Errorf("tailOf = %q; want it to begin at the PANIC", got)
	}
	// With no other FATAL, the last three lines, not the refusal on.
	for _, refusal := range refusals {
		got := tailOf("2026-12-03 08:41:40.510 UTC [1] FATAL:  " + refusal + "\none\ntwo\nthree\nfour")
		if got != "two / three / four" {
			t.Errorf("tailOf with only the refusal %q = %q; want the last three lines", refusal, got)
		}
	}
}
