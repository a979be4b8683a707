package devserver

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/server/common/log/tag"
)

// TestCancelledTaskQueueLoadIsNotAnError: the one record the server logs
// as an internal error for a task queue load its own cancellation cut
// short goes down to debug; every other error stays an error, those that
// mention a cancelled context included, and so does a Fatal.
func TestCancelledTaskQueueLoadIsNotAnError(t *testing.T) {
	const internal = "Operation failed with internal error."
	cancelledLoad := serviceerror.NewUnavailable(
		"GetTaskQueue operation failed. Failed to check if task queue /_sys/orders/2 of type Workflow existed. Error: context canceled")
	for _, tc := range []struct {
		name  string
		log   func(a slogAdapter)
		want  string // the level logged at warn; "" when dropped
		debug bool   // logged at debug when the level is debug
	}{
		{"the cancelled load", func(a slogAdapter) { a.Error(internal, tag.Error(cancelledLoad), tag.Operation("GetTaskQueue")) }, "", true},
		{"the same load failing otherwise", func(a slogAdapter) {
			a.Error(internal, tag.Error(serviceerror.NewUnavailable("GetTaskQueue operation failed. Failed to check if task queue /_sys/orders/2 of type Workflow existed. Error: connection refused")))
		}, "ERROR", false},
		{"another store operation cancelled", func(a slogAdapter) {
			a.Error("Persistent store operation failure", tag.Error(serviceerror.NewUnavailable("Failed to lock task queue. Error: context canceled")))
		}, "ERROR", false},
		{"another internal error cancelled", func(a slogAdapter) { a.Error(internal, tag.Error(fmt.Errorf("poll: %w", context.Canceled))) }, "ERROR", false},
		{"a Fatal", func(a slogAdapter) { a.Fatal(internal, tag.Error(cancelledLoad)) }, "ERROR", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, at := range []slog.Level{slog.LevelWarn, slog.LevelDebug} {
				var buf bytes.Buffer
				level := new(slog.LevelVar)
				level.Set(at)
				tc.log(slogAdapter{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), level: level})
				got := ""
				if out := buf.String(); out != "" {
					got = strings.TrimPrefix(strings.Fields(out)[1], "level=")
				}
				want := tc.want
				if at == slog.LevelDebug && tc.debug {
					want = "DEBUG"
				}
				if got != want {
					t.Errorf("at %v: logged at %q (%q); want %q", at, got, buf.String(), want)
				}
			}
		})
	}
}
