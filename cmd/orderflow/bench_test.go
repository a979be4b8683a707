package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchChecksItsArgumentsFirst: a usage mistake is a usage error
// (exit 2), and an -out the results cannot be written to fails, before
// the bench starts a stack and measures for minutes: it used to find both
// out only at the end (-out) or after the stack was up (-n).
func TestBenchChecksItsArgumentsFirst(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := Config{DataDir: filepath.Join(t.TempDir(), "data")}
	// Every mistake in the flags is found before one in the environment
	// too, as orderflow events finds its own.
	bad := cfg
	bad.invalid = &configError{errors.New(`ORDERFLOW_LOG_FORMAT: "xml" is neither text nor json`)}
	for _, args := range [][]string{{"-n", "-5"}, {"-c", "0"}, {"-rounds", "0"}, {"-drain", "-1"}, {"--bogus"}, {"extra"},
		{"-log-level", "loud", "-out", t.TempDir()}} {
		for _, cfg := range []Config{cfg, bad} {
			err := runBench(context.Background(), cfg, logger, args)
			var usage *usageError
			if !errors.As(err, &usage) {
				t.Errorf("bench %v (configuration error %v) = %v; want a usage error", args, cfg.Valid(), err)
			}
		}
	}
	// A bad -log-level is found before -out is made.
	out := filepath.Join(t.TempDir(), "results")
	if err := runBench(context.Background(), cfg, logger, []string{"-log-level", "loud", "-out", out}); err == nil {
		t.Error("bench -log-level loud succeeded")
	}
	if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("bench -log-level loud made -out %s (%v); want it checked before", out, err)
	}
	err := runBench(context.Background(), cfg, logger, []string{"-out", "/proc/orderflow-bench-nowhere"})
	if err == nil || !strings.Contains(err.Error(), "-out /proc/orderflow-bench-nowhere") {
		t.Errorf("bench with an unwritable -out = %v; want an error naming it", err)
	}
}
