package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream defaults.
const (
	// DefaultMaxAge is how long a stream keeps its events. The order stream
	// is the archive other contexts replay from, so it keeps days, not
	// minutes.
	DefaultMaxAge = 30 * 24 * time.Hour
	// DefaultDuplicateWindow is how long JetStream remembers a Nats-Msg-Id.
	// A copy of an event published again inside it is dropped. The relay
	// republishes in three situations: after a crash between the publish
	// and the mark (seconds: the restart), after a standby takes over
	// (seconds), and when a client buffered a publish across a NATS outage
	// and flushes it on reconnect (as long as the outage). One hour covers
	// all three with a wide margin, and costs the server one entry per
	// event of the last hour (tens of megabytes at a few hundred events a
	// second). A copy published later than that reaches the stream twice;
	// consumers dedup by event ID anyway.
	DefaultDuplicateWindow = time.Hour
)

// StreamConfig tunes the streams EnsureStreams creates or updates.
type StreamConfig struct {
	// MaxAge is how long events are kept; zero means DefaultMaxAge.
	MaxAge time.Duration
	// Duplicates is the de-duplication window; zero means
	// DefaultDuplicateWindow. It must not exceed MaxAge.
	Duplicates time.Duration
	// Replicas is the number of copies a NATS cluster keeps of a new
	// stream; zero means 1 (the embedded server is a single node). An
	// existing stream with more keeps its own (CreateOrUpdateStream).
	Replicas int
}

// StreamRequestTimeout bounds a request that creates or updates a stream,
// when the caller's context does not. It is longer than JetStream's default
// of 5 s: a server that has just started recovers its streams from disk
// first, and on a busy machine that has taken longer than 5 s.
const StreamRequestTimeout = 30 * time.Second

// CreateOrUpdateStream is js.CreateOrUpdateStream within
// StreamRequestTimeout, except that it never lowers the replica count of a
// stream that exists: every orderflow process runs it at start, and one
// that asks for 1 copy (the default) must not scale a stream an operator
// gave three (`nats stream edit --replicas 3`) back to one.
func CreateOrUpdateStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, StreamRequestTimeout)
	defer cancel()
	st, err := js.Stream(ctx, cfg.Name)
	switch {
	case err == nil:
		cfg.Replicas = max(cfg.Replicas, st.CachedInfo().Config.Replicas)
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, err
	}
	return js.CreateOrUpdateStream(ctx, cfg)
}

// EnsureStreams creates ORDER_EVENTS and DELIVERY_EVENTS, or updates them to
// cfg when they exist: file storage, limits retention (events stay until
// they age out, whoever has read them), the oldest discarded first. It is
// idempotent, so every process that publishes calls it at start.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) error {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Duplicates <= 0 {
		cfg.Duplicates = DefaultDuplicateWindow
	}
	if cfg.Duplicates > cfg.MaxAge {
		return fmt.Errorf("streams: duplicate window %s exceeds max age %s", cfg.Duplicates, cfg.MaxAge)
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	streams := []jetstream.StreamConfig{
		{
			Name:        OrderStream,
			Description: "orderflow order events (CloudEvents, binary mode), the order context's event archive",
			Subjects:    []string{OrderSubjects},
		},
		{
			Name:        DeliveryStream,
			Description: "orderflow delivery events (CloudEvents, binary mode)",
			Subjects:    []string{DeliverySubjects},
		},
	}
	for _, sc := range streams {
		sc.Storage = jetstream.FileStorage
		sc.Retention = jetstream.LimitsPolicy
		sc.Discard = jetstream.DiscardOld
		sc.MaxAge = cfg.MaxAge
		sc.Duplicates = cfg.Duplicates
		sc.Replicas = cfg.Replicas
		if _, err := CreateOrUpdateStream(ctx, js, sc); err != nil {
			return fmt.Errorf("create or update stream %s: %w", sc.Name, err)
		}
	}
	return nil
}
