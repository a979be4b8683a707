package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/events"
)

// TailOptions chooses what Tail prints.
type TailOptions struct {
	// Subject filters the events, e.g. orderflow.order.accepted.* or
	// orderflow.*.*.<order id>; empty means every event.
	Subject string
	// All starts at the first event each stream holds; Since at the first
	// one stored at or after it; otherwise only new events are printed.
	All   bool
	Since time.Time
	// Streams are the streams to read; empty means SourceStreams. Those
	// that hold no subject matching Subject are left out.
	Streams []string
	// Logger reports messages that are not CloudEvents.
	Logger *slog.Logger
}

// Tail prints events as they arrive, one per line, in the CloudEvents JSON
// format (events.Envelope.StructuredJSON), until ctx is done; once it has
// returned it writes nothing more to out. It reads through ordered
// consumers, which acknowledge nothing and leave no trace on the server.
func Tail(ctx context.Context, js jetstream.JetStream, opts TailOptions, out io.Writer) error {
	if opts.Subject == "" {
		opts.Subject = "orderflow.>"
	}
	if len(opts.Streams) == 0 {
		opts.Streams = slices.Clone(SourceStreams)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// mu orders the writes to out; done, set once Tail returns, stops the
	// callbacks still running then from writing: Stop does not wait for
	// them.
	var (
		mu   sync.Mutex
		done bool
	)
	emit := func(m jetstream.Msg) {
		env, err := events.Decode(m.Headers(), m.Data())
		if err != nil {
			opts.Logger.Warn("not a CloudEvent", "subject", m.Subject(), "err", err)
			return
		}
		line, err := env.StructuredJSON()
		if err != nil {
			opts.Logger.Warn("render event", "subject", m.Subject(), "err", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !done {
			_, _ = out.Write(append(line, '\n'))
		}
	}
	var (
		stops   []jetstream.ConsumeContext
		missing bool
		held    []string // the subjects of the streams there are
	)
	defer func() {
		for _, s := range stops {
			s.Stop()
		}
		mu.Lock()
		done = true
		mu.Unlock()
	}()
	for _, name := range opts.Streams {
		st, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			opts.Logger.Warn("no such stream (yet)", "stream", name)
			missing = true
			continue
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		held = append(held, st.CachedInfo().Config.Subjects...)
		filter, ok := streamFilter(st.CachedInfo().Config.Subjects, opts.Subject)
		if !ok {
			continue
		}
		occ := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
		if filter != "" {
			occ.FilterSubjects = []string{filter}
		}
		switch {
		case opts.All:
			occ.DeliverPolicy = jetstream.DeliverAllPolicy
		case !opts.Since.IsZero():
			since := opts.Since
			occ.DeliverPolicy, occ.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
		}
		cons, err := st.OrderedConsumer(ctx, occ)
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		cc, err := cons.Consume(emit)
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		stops = append(stops, cc)
	}
	switch {
	case len(stops) == 0 && !missing:
		return &SubjectNotHeldError{Subject: opts.Subject, Streams: opts.Streams, Held: held}
	case len(stops) == 0:
		return fmt.Errorf("no stream of %v holds subject %s", opts.Streams, opts.Subject)
	}
	<-ctx.Done()
	return nil
}

// SubjectNotHeldError is what Tail returns when every stream it reads
// exists and none holds a subject matching the one asked for: a mistyped
// subject, most likely (orderflow.orders.>), not a failure of the server.
type SubjectNotHeldError struct {
	Subject string
	// Streams are the streams read, Held their subjects.
	Streams, Held []string
}

// Error names the subjects the streams hold.
func (e *SubjectNotHeldError) Error() string {
	return fmt.Sprintf("no stream of %s holds subject %s (they hold %s)", strings.Join(e.Streams, ", "), e.Subject, strings.Join(e.Held, ", "))
}

// streamFilter is the consumer filter for reading subject from a stream
// with the given subjects: "" when subject covers the whole stream, subject
// itself when it overlaps the stream's, and false when it does not.
func streamFilter(streamSubjects []string, subject string) (string, bool) {
	overlap := false
	for _, s := range streamSubjects {
		if subjectMatches(subject, s) {
			if len(streamSubjects) == 1 {
				return "", true
			}
			overlap = true
		} else if subjectsCollide(subject, s) {
			overlap = true
		}
	}
	return subject, overlap
}

// subjectMatches reports whether pattern matches every subject that sub
// (itself possibly with wildcards) matches.
func subjectMatches(pattern, sub string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(sub, ".")
	for i, tok := range p {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case s[i] == ">":
			return false
		case tok == "*":
			continue
		case s[i] == "*" || s[i] != tok:
			return false
		}
	}
	return len(p) == len(s)
}

// subjectsCollide reports whether some subject matches both patterns.
func subjectsCollide(a, b string) bool {
	x, y := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(x) && i < len(y); i++ {
		if x[i] == ">" || y[i] == ">" {
			return true
		}
		if x[i] != "*" && y[i] != "*" && x[i] != y[i] {
			return false
		}
	}
	return len(x) == len(y)
}
