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

func (s slogAdapter) Debug(msg string, tags ...tag.Tag)  { s.emit(slog.LevelDebug, msg, tags) }
func (s slogAdapter) Info(msg string, tags ...tag.Tag)   { s.emit(slog.LevelInfo, msg, tags) }
func (s slogAdapter) Warn(msg string, tags ...tag.Tag)   { s.emit(slog.LevelWarn, msg, tags) }
func (s slogAdapter) Error(msg string, tags ...tag.Tag)  { s.emit(slog.LevelError, msg, tags) }
func (s slogAdapter) DPanic(msg string, tags ...tag.Tag) { s.emit(slog.LevelError, msg, tags) }
func (s slogAdapter) Panic(msg string, tags ...tag.Tag)  { s.emit(slog.LevelError, msg, tags) }
func (s slogAdapter) Fatal(msg string, tags ...tag.Tag) {
	s.fatal.record(msg, tags)
	s.emit(slog.LevelError, msg, tags)
}

func (s slogAdapter) emit(level slog.Level, msg string, tags []tag.Tag) {
	if level >= slog.LevelError && cancelled(tags) {
		level = slog.LevelDebug
	}
	if level < s.level.Level() {
		return
	}
	attrs := make([]slog.Attr, len(tags))
	for i, t := range tags {
		attrs[i] = slog.Any(t.Key(), t.Value())
	}
	s.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// cancelled reports whether the error a log record carries is a context
// cancelled by the caller of the request: a worker that stopped while its
// poll waited for the server to load a task queue, say, which the server
// logs as an internal error (once its message is flattened into a
// serviceerror, only the text is left to tell). It is no fault of the
// server's, so it is logged at debug rather than error.
func cancelled(tags []tag.Tag) bool {
	for _, t := range tags {
		if t.Key() != "error" { // tag.Error's key
			continue
		}
		if zt, ok := t.(tag.ZapTag); ok {
			if err, ok := zt.Field().Interface.(error); ok && errors.Is(err, context.Canceled) {
				return true
			}
		}
		if text, ok := t.Value().(string); ok && strings.Contains(text, context.Canceled.Error()) {
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
