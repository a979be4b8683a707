package consumer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/events"
)

// The dead-letter stream: it captures JetStream's advisories about messages
// a consumer gave up on, which name the stream, the consumer and the
// message's stream sequence (the message itself stays in its stream, the
// archive, where DeadLetters looks it up).
const (
	DeadLetterStream = "DEAD_LETTERS"
	// AdvisoryMaxDeliveries is published when a message was delivered
	// MaxDeliver times without an ack; followed by ".<stream>.<consumer>".
	AdvisoryMaxDeliveries = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
	// AdvisoryTerminated is published when a consumer terminated a message.
	AdvisoryTerminated = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED"
)

// The redrive stream: copies of events for one consumer only, from the dead
// letters or a replay, on orderflow.redrive.<consumer>.<original subject>.
const (
	RedriveStream        = "EVENTS_REDRIVE"
	RedriveSubjectPrefix = "orderflow.redrive."
)

// Headers a redriven copy carries besides the original's. A dead letter of
// a copy names the copy, which the redrive stream keeps a week, not the
// 30 days of DEAD_LETTERS; so the kit also writes where the original is
// at the start of the reason it terminates a copy with ("original
// ORDER_EVENTS #41: ..."), which DeadLetters reads back. (A copy never
// acknowledged, dead-lettered by max deliveries, has no reason: its entry
// can be redriven only while the copy is there.)
const (
	HeaderOriginalStream = "Orderflow-Original-Stream"
	HeaderOriginalSeq    = "Orderflow-Original-Sequence"
	// HeaderRedrive says why the copy exists: "dead-letter" or "replay".
	HeaderRedrive = "Orderflow-Redrive"
	// HeaderReplayFrom is a replay's first stream sequence, where the
	// replay's reach begins (see the package docs on adoption).
	HeaderReplayFrom = "Orderflow-Replay-From"
	// HeaderSkip "true" makes the consumer record the event without
	// running its handler.
	HeaderSkip = "Orderflow-Skip"
)

// SourceStreams are the streams orderflow's consumers read; replay looks
// for a consumer on them.
var SourceStreams = []string{events.OrderStream, events.DeliveryStream}

// redriveMaxAge is how long the redrive stream keeps a copy that no
// consumer took.
const redriveMaxAge = 7 * 24 * time.Hour

// RedriveSubject is the subject of a copy of an event with the given
// original subject for one consumer; with original ">" it is the
// consumer's whole redrive subject space.
func RedriveSubject(consumer, original string) string {
	return RedriveSubjectPrefix + consumer + "." + original
}

// Consumers lists the kit consumers by name, sorted: the durable consumers
// of the redrive stream, where every consumer of this kit creates one
// under its own name when it first runs, and keeps it (with no inactivity
// threshold). They are the consumers Redrive and Replay hand events to.
func Consumers(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	st, err := js.Stream(ctx, RedriveStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil // no kit consumer has run yet
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", RedriveStream, err)
	}
	var names []string
	lister := st.ConsumerNames(ctx)
	for name := range lister.Name() {
		names = append(names, name)
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("consumers of %s: %w", RedriveStream, err)
	}
	slices.Sort(names)
	return names, nil
}

// UnknownConsumerError is what Replay returns for a consumer name that no
// durable consumer on the streams it looked at has.
type UnknownConsumerError struct {
	Name string
	// Streams are where it was looked for.
	Streams []string
	// Known are the kit consumers there are (Consumers).
	Known []string
}

// Error names the consumers there are.
func (e *UnknownConsumerError) Error() string {
	known := "no kit consumer has run on this server"
	if len(e.Known) > 0 {
		known = "consumers: " + strings.Join(e.Known, ", ")
	}
	return fmt.Sprintf("no consumer %q on %s (%s)", e.Name, strings.Join(e.Streams, ", "), known)
}

// originalPrefix starts the reason a kit consumer terminates a redriven or
// replayed copy with: where the copy's event is in its original stream,
// and for a replay's copy where the replay began, as in "original
// ORDER_EVENTS #41: permanent: ..." or "original ORDER_EVENTS #41
// replay-from #30: ...". DeadLetters reads it back, so that the entry can
// be redriven from the original once the copy has aged out of the redrive
// stream.
func originalPrefix(stream string, seq, replayFrom uint64) string {
	s := fmt.Sprintf("original %s #%d", stream, seq)
	if replayFrom > 0 {
		s += fmt.Sprintf(" replay-from #%d", replayFrom)
	}
	return s + ": "
}

var originalPrefixRE = regexp.MustCompile(`^original (\S+) #(\d+)(?: replay-from #(\d+))?: `)

// parseOriginalPrefix undoes originalPrefix: the original's stream and
// sequence, the replay's start (0 if none), and the rest of the reason.
func parseOriginalPrefix(reason string) (stream string, seq, replayFrom uint64, rest string, ok bool) {
	m := originalPrefixRE.FindStringSubmatch(reason)
	if m == nil {
		return "", 0, 0, reason, false
	}
	seq, err := strconv.ParseUint(m[2], 10, 64)
	if err != nil {
		return "", 0, 0, reason, false
	}
	if m[3] != "" {
		if replayFrom, err = strconv.ParseUint(m[3], 10, 64); err != nil {
			return "", 0, 0, reason, false
		}
	}
	return m[1], seq, replayFrom, reason[len(m[0]):], true
}

// EnsureStreams creates or updates DEAD_LETTERS and EVENTS_REDRIVE. Every
// consumer runs it at start; it is idempotent.
func EnsureStreams(ctx context.Context, js jetstream.JetStream) error {
	for _, cfg := range []jetstream.StreamConfig{{
		Name:        DeadLetterStream,
		Description: "orderflow dead letters: JetStream's max-deliveries and terminated advisories",
		Subjects:    []string{AdvisoryMaxDeliveries + ".>", AdvisoryTerminated + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      30 * 24 * time.Hour,
	}, {
		Name:        RedriveStream,
		Description: "orderflow redrive: events redriven from the dead letters or replayed, for one consumer each",
		Subjects:    []string{RedriveSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      redriveMaxAge,
		Duplicates:  10 * time.Minute,
	}} {
		if _, err := events.CreateOrUpdateStream(ctx, js, cfg); err != nil {
			return fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// DeadLetter is one entry of DEAD_LETTERS and the event it names.
type DeadLetter struct {
	// Seq is the entry's sequence in DEAD_LETTERS, its ID.
	Seq  uint64
	Time time.Time
	// Kind is "terminated" (by the consumer: poison, or out of retries)
	// or "max_deliveries" (never acknowledged: a handler that hung or a
	// process that died on it each time).
	Kind       string
	Stream     string // where the consumer read it
	Consumer   string
	StreamSeq  uint64
	Deliveries uint64
	// Reason is the consumer's reason to terminate it, if any (without
	// the original's location a kit consumer starts a copy's reason with).
	Reason string

	// The event, looked up in Stream. For a copy on the redrive stream,
	// Original* name the original one, and the event is looked up there
	// once the copy has aged out.
	OriginalStream string
	OriginalSeq    uint64
	Subject        string
	EventID        string
	EventType      string
	// LookupErr says why the event could not be looked up ("" when it was):
	// e.g. it aged out of its stream.
	LookupErr string

	msg *jetstream.RawStreamMsg
	// replayFrom is where the replay that made the copy began, if one did.
	replayFrom uint64
}

// Why is a one-line explanation of the entry.
func (d DeadLetter) Why() string {
	switch {
	case d.Kind == "max_deliveries":
		return fmt.Sprintf("not acknowledged after %d deliveries", d.Deliveries)
	case d.Reason != "":
		return d.Reason
	}
	return fmt.Sprintf("terminated after %d deliveries", d.Deliveries)
}

// advisory is the JSON of both advisories.
type advisory struct {
	Type       string    `json:"type"`
	Time       time.Time `json:"timestamp"`
	Stream     string    `json:"stream"`
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason"`
}

// DeadLetters lists the dead letters, oldest first; consumer "" means
// every consumer's.
func DeadLetters(ctx context.Context, js jetstream.JetStream, consumer string) ([]DeadLetter, error) {
	dlq, err := js.Stream(ctx, DeadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", DeadLetterStream, err)
	}
	streams := map[string]jetstream.Stream{}
	var out []DeadLetter
	for seq := uint64(1); ; seq++ {
		raw, err := dlq.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", DeadLetterStream, err)
		}
		seq = raw.Sequence
		var adv advisory
		if err := json.Unmarshal(raw.Data, &adv); err != nil {
			continue // not an advisory; nothing to redrive
		}
		if consumer != "" && adv.Consumer != consumer {
			continue
		}
		d := DeadLetter{
			Seq: raw.Sequence, Time: raw.Time, Kind: "terminated",
			Stream: adv.Stream, Consumer: adv.Consumer, StreamSeq: adv.StreamSeq,
			Deliveries: adv.Deliveries, Reason: adv.Reason,
			OriginalStream: adv.Stream, OriginalSeq: adv.StreamSeq,
		}
		if strings.HasPrefix(raw.Subject, AdvisoryMaxDeliveries+".") {
			d.Kind = "max_deliveries"
		}
		if d.Stream == RedriveStream {
			if stream, seq, from, rest, ok := parseOriginalPrefix(d.Reason); ok {
				d.OriginalStream, d.OriginalSeq, d.replayFrom, d.Reason = stream, seq, from, rest
			}
		}
		lookup(ctx, js, streams, &d)
		out = append(out, d)
	}
	return out, nil
}

// lookup finds the event a dead letter names: the message it names, or
// for a copy gone from the redrive stream, the original its reason names.
// An entry names a message by its stream sequence alone, so a stream
// deleted and created again since the entry was written holds another
// event at that sequence, or none: such an entry's event is gone.
func lookup(ctx context.Context, js jetstream.JetStream, streams map[string]jetstream.Stream, d *DeadLetter) {
	raw, err := getMsg(ctx, js, streams, d.Stream, d.StreamSeq, d.Time)
	var recreated *recreatedError
	if (errors.Is(err, jetstream.ErrMsgNotFound) || errors.As(err, &recreated)) && d.OriginalStream != d.Stream {
		// The copy aged out, or its stream was created again since:
		// the original is where the reason says.
		if raw, err = getMsg(ctx, js, streams, d.OriginalStream, d.OriginalSeq, d.Time); err == nil {
			d.msg, d.Subject = raw, raw.Subject
			d.EventID, d.EventType = raw.Header.Get(events.HeaderID), raw.Header.Get(events.HeaderType)
			return
		}
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			d.LookupErr = "gone from the stream (aged out or deleted), and so is the original"
			return
		}
	}
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		d.LookupErr = "gone from the stream (aged out or deleted)"
		return
	case errors.As(err, &recreated):
		d.LookupErr = recreated.Error()
		return
	case err != nil:
		d.LookupErr = err.Error()
		return
	}
	d.msg = raw
	d.Subject = raw.Subject
	d.EventID = raw.Header.Get(events.HeaderID)
	d.EventType = raw.Header.Get(events.HeaderType)
	if d.Stream == RedriveStream {
		d.OriginalStream = raw.Header.Get(HeaderOriginalStream)
		d.OriginalSeq, _ = strconv.ParseUint(raw.Header.Get(HeaderOriginalSeq), 10, 64)
		d.Subject = strings.TrimPrefix(raw.Subject, RedriveSubject(d.Consumer, ""))
	}
}

// getMsg reads message seq of a stream, keeping the streams it opened,
// for an entry dead-lettered at entered: a stream created after that is
// not the one the entry names (recreatedError).
func getMsg(ctx context.Context, js jetstream.JetStream, streams map[string]jetstream.Stream, name string, seq uint64, entered time.Time) (*jetstream.RawStreamMsg, error) {
	st, ok := streams[name]
	if !ok {
		var err error
		if st, err = js.Stream(ctx, name); err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		streams[name] = st
	}
	if created := st.CachedInfo().Created; created.After(entered) {
		return nil, &recreatedError{stream: name, created: created}
	}
	return st.GetMsg(ctx, seq)
}

// recreatedError is a stream created after the dead letter that names it.
type recreatedError struct {
	stream  string
	created time.Time
}

func (e *recreatedError) Error() string {
	return fmt.Sprintf("gone: %s was created again since (at %s), and its sequence numbers name other events now",
		e.stream, e.created.UTC().Format(time.RFC3339))
}

// RedriveOptions chooses what Redrive hands back.
type RedriveOptions struct {
	// Consumer, when set, redrives that consumer's dead letters only.
	Consumer string
	// Only, when set, redrives just these entries (DeadLetter.Seq).
	Only []uint64
	// Skip has the consumer record the events without running its
	// handler: the way past an event that will never go through, so that
	// its aggregate's later events are no longer held back for it.
	Skip bool
}

// RedriveResult reports a redrive.
type RedriveResult struct {
	// Redriven lists the entries handed back, in the order they were.
	Redriven []DeadLetter
	// Left lists entries left in the dead letters, with LookupErr saying
	// why.
	Left []DeadLetter
}

// Redrive hands dead-lettered events back to the consumer that gave up on
// them, and to no other: entry by entry, each consumer's in original
// stream order, it publishes a copy on the consumer's redrive subject and,
// once the redrive stream has acknowledged it, deletes the entry. The
// copy's message ID is the entry's, so a redrive interrupted and run again
// does not publish twice; the consumer's inbox makes an event it has since
// taken a no-op. An entry of a copy that has aged out of the redrive
// stream is handed back from the original, while its stream keeps it.
func Redrive(ctx context.Context, js jetstream.JetStream, opts RedriveOptions) (RedriveResult, error) {
	var res RedriveResult
	all, err := DeadLetters(ctx, js, opts.Consumer)
	if err != nil {
		return res, err
	}
	var todo []DeadLetter
	for _, d := range all {
		if len(opts.Only) == 0 || slices.Contains(opts.Only, d.Seq) {
			todo = append(todo, d)
		}
	}
	inRedriveOrder(todo)
	dlq, err := js.Stream(ctx, DeadLetterStream)
	if err != nil {
		return res, fmt.Errorf("stream %s: %w", DeadLetterStream, err)
	}
	kit := map[string]bool{} // consumer → has a redrive consumer
	type event struct {
		consumer, stream string
		seq              uint64
	}
	sent := map[event]bool{}
	for _, d := range todo {
		if d.msg == nil {
			res.Left = append(res.Left, d)
			continue
		}
		known, ok := kit[d.Consumer]
		if !ok {
			_, err := js.Consumer(ctx, RedriveStream, d.Consumer)
			if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return res, fmt.Errorf("consumer %s on %s: %w", d.Consumer, RedriveStream, err)
			}
			known, kit[d.Consumer] = err == nil, err == nil
		}
		if !known {
			d.LookupErr = "consumer " + d.Consumer + " does not read " + RedriveStream + " (it is not a consumer-kit consumer, or has never run)"
			res.Left = append(res.Left, d)
			continue
		}
		// The same event dead-lettered twice (e.g. never acknowledged, then
		// terminated) goes back once.
		ev := event{d.Consumer, d.OriginalStream, d.OriginalSeq}
		if !sent[ev] {
			kind := "dead-letter"
			// The message ID names the entry and whether it is a skip: a
			// skip of an entry that a crashed redrive had already sent
			// must not be dropped as that redrive's duplicate (nor the
			// other way round).
			msgID := fmt.Sprintf("dlq:%d", d.Seq)
			if opts.Skip {
				msgID += ":skip"
			}
			m := redriveMsg(d.Consumer, d.Subject, d.msg, msgID, d.OriginalStream, d.OriginalSeq, kind)
			if d.replayFrom > 0 {
				// An original, looked up for a copy that aged out, does
				// not say where the replay that made the copy began.
				m.Header.Set(HeaderReplayFrom, strconv.FormatUint(d.replayFrom, 10))
			}
			if opts.Skip {
				m.Header.Set(HeaderSkip, "true")
			}
			if _, err := js.PublishMsg(ctx, m); err != nil {
				return res, fmt.Errorf("redrive entry %d (%s %s) to %s: %w", d.Seq, d.EventType, d.EventID, d.Consumer, err)
			}
		}
		if err := dlq.DeleteMsg(ctx, d.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return res, fmt.Errorf("delete dead letter %d: %w", d.Seq, err)
		}
		res.Redriven = append(res.Redriven, d)
		sent[ev] = true
	}
	return res, nil
}

// inRedriveOrder orders dead letters, which DeadLetters lists by entry, as
// Redrive hands them back: by entry still, but each consumer's own, on the
// places they have in that order, in original stream order, the order an
// ordered consumer takes an aggregate's events in.
func inRedriveOrder(dead []DeadLetter) {
	places := map[string][]int{} // consumer → the indexes of its entries
	for i, d := range dead {
		places[d.Consumer] = append(places[d.Consumer], i)
	}
	for _, idx := range places {
		own := make([]DeadLetter, len(idx))
		for j, i := range idx {
			own[j] = dead[i]
		}
		slices.SortStableFunc(own, func(a, b DeadLetter) int {
			return cmp.Or(cmp.Compare(a.OriginalStream, b.OriginalStream), cmp.Compare(a.OriginalSeq, b.OriginalSeq))
		})
		for j, i := range idx {
			dead[i] = own[j]
		}
	}
}

// redriveMsg copies a stored message to a consumer's redrive subject, with
// its CloudEvents headers, where it came from, and a message ID of its own.
func redriveMsg(consumer, subject string, raw *jetstream.RawStreamMsg, msgID, stream string, seq uint64, kind string) *nats.Msg {
	m := nats.NewMsg(RedriveSubject(consumer, subject))
	for k, vs := range raw.Header {
		for _, v := range vs {
			m.Header.Add(k, v)
		}
	}
	m.Header.Set(nats.MsgIdHdr, msgID)
	m.Header.Set(HeaderOriginalStream, stream)
	m.Header.Set(HeaderOriginalSeq, strconv.FormatUint(seq, 10))
	m.Header.Set(HeaderRedrive, kind)
	m.Header.Del(HeaderSkip)
	m.Data = raw.Data
	return m
}
