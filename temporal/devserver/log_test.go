package devserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/server/common/log/tag"
)

// TestCancelledRequestsAreNotErrors: an error the server logs for a request
// its caller cancelled goes down to debug, whether the cancellation is
// wrapped or only named in a serviceerror's text; any other error stays an
// error.
func TestCancelledRequestsAreNotErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string // the level logged; "" when dropped
	}{
		{"flattened into a serviceerror", serviceerror.NewUnavailable(
			"GetTaskQueue operation failed. Failed to check if task queue /_sys/orders/2 of type Workflow existed. Error: context canceled"), ""},
		{"wrapped", fmt.Errorf("poll: %w", context.Canceled), ""},
		{"another error", serviceerror.NewUnavailable("GetTaskQueue operation failed: connection refused"), "ERROR"},
		{"a deadline", fmt.Errorf("poll: %w", context.DeadlineExceeded), "ERROR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			level := new(slog.LevelVar)
			level.Set(slog.LevelWarn)
			a := slogAdapter{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), level: level}
			a.Error("Operation failed with internal error.", tag.Error(tc.err), tag.Operation("GetTaskQueue"))
			got := ""
			if out := buf.String(); out != "" {
				got = strings.TrimPrefix(strings.Fields(out)[1], "level=")
			}
			if got != tc.want {
				t.Errorf("logged at %q (%q); want %q", got, buf.String(), tc.want)
			}
		})
	}
	// At debug, the dropped one is there to see.
	var buf bytes.Buffer
	level := new(slog.LevelVar)
	level.Set(slog.LevelDebug)
	a := slogAdapter{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), level: level}
	a.Error("Operation failed with internal error.", tag.Error(errors.New("Error: context canceled")))
	if !strings.Contains(buf.String(), "level=DEBUG") {
		t.Errorf("at debug: %q; want the record at DEBUG", buf.String())
	}
}
