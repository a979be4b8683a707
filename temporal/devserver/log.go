package devserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
)

// slogAdapter hands the server's tagged logs to slog, dropping those below
// level: the server logs a great deal at info that a developer never needs.
//
// Fatal is logged and remembered in fatal, when set. The server's own logger
// exits the process on Fatal, so the code after such a call was never meant
// to run: a listener that failed to bind comes back nil, and serving on it
// later panics. Start therefore never starts a server whose build logged a
// Fatal, and returns it as an error instead.
type slogAdapter struct {
	log   *slog.Logger
	level *slog.LevelVar
	fatal *fatalLog
}

var _ log.Logger = slogAdapter{}

func (s slogAdapter) Debug(msg string, tags ...tag.Tag) { s.emit(slog.LevelDebug, msg, tags) }
func (s slogAdapter) Info(msg string, tags ...tag.Tag)  { s.emit(slog.LevelInfo, msg, tags) }
func (s slogAdapter) Warn(msg string, tags ...tag.Tag)  { s.emit(slog.LevelWarn, msg, tags) }
func (s slogAdapter) Error(msg string, tags ...tag.Tag) {
	level := slog.LevelError
	if cancelledLoad(msg, tags) {
		level = slog.LevelDebug
	}
	s.emit(level, msg, tags)
}
func (s slogAdapter) DPanic(msg string, tags ...tag.Tag) { s.emit(slog.LevelError, msg, tags) }
func (s slogAdapter) Panic(msg string, tags ...tag.Tag)  { s.emit(slog.LevelError, msg, tags) }
func (s slogAdapter) Fatal(msg string, tags ...tag.Tag) {
	s.fatal.record(msg, tags)
	s.emit(slog.LevelError, msg, tags)
}

func (s slogAdapter) emit(level slog.Level, msg string, tags []tag.Tag) {
	if level < s.level.Level() {
		return
	}
	attrs := make([]slog.Attr, len(tags))
	for i, t := range tags {
		attrs[i] = slog.Any(t.Key(), t.Value())
	}
	s.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// cancelledLoad reports whether an error record is the matching service's
// load of a task queue cut short by its own cancellation: when a worker
// stops (or the queue is unloaded, idle) while the load waits for the
// database, the SQL store flattens the context.Canceled into an
// Unavailable's text, and the server, no longer recognising it as a
// cancellation, logs it as an internal error (temporalio/temporal#12201,
// open for server 1.31 and 1.32). Nothing failed, so it is logged at debug.
// Only that record: other errors that mention a cancelled context (a
// persistence call that gave up on a stalled database, say) stay errors.
func cancelledLoad(msg string, tags []tag.Tag) bool {
	if msg != "Operation failed with internal error." {
		return false
	}
	for _, t := range tags {
		if text, ok := t.Value().(string); ok && t.Key() == "error" && // tag.Error's
			strings.HasPrefix(text, "GetTaskQueue operation failed.") && strings.HasSuffix(text, "Error: context canceled") {
			return true
		}
	}
	return false
}

// fatalLog keeps the first Fatal the server logged.
type fatalLog struct {
	mu  sync.Mutex
	err error
}

func (f *fatalLog) record(msg string, tags []tag.Tag) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return
	}
	parts := make([]string, 0, len(tags))
	for _, t := range tags {
		parts = append(parts, fmt.Sprintf("%s=%v", t.Key(), t.Value()))
	}
	if len(parts) == 0 {
		f.err = errors.New(msg)
		return
	}
	f.err = fmt.Errorf("%s (%s)", msg, strings.Join(parts, ", "))
}

// get returns the first Fatal, with its tags, as an error; nil when there
// was none.
func (f *fatalLog) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
