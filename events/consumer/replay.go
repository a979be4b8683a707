package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ReplayOptions chooses what Replay redelivers.
type ReplayOptions struct {
	// Consumer is the durable consumer to redeliver to (required).
	Consumer string
	// Stream is the consumer's stream; empty means whichever of
	// SourceStreams has a consumer of that name.
	Stream string
	// Since replays the events stored at or after this time; FromSeq
	// those from this stream sequence. Exactly one must be set.
	Since   time.Time
	FromSeq uint64
}

// ReplayResult reports a replay.
type ReplayResult struct {
	Stream   string
	Consumer string
	// First and Last are the stream sequences of the first and last event
	// replayed; Count how many there were.
	First, Last uint64
	Count       int
}

// Replay redelivers a range of the archive, in stream order, to one
// consumer only, through its redrive subject: from Since or FromSeq up to
// the stream's last event when the replay starts (later ones reach the
// consumer live anyway), through the consumer's own subject filter. The
// consumer's inbox makes every event it has already taken a no-op; see the
// package documentation for what a replay is for.
func Replay(ctx context.Context, js jetstream.JetStream, opts ReplayOptions) (ReplayResult, error) {
	res := ReplayResult{Consumer: opts.Consumer}
	if opts.Consumer == "" {
		return res, errors.New("replay: no consumer given")
	}
	if opts.Since.IsZero() == (opts.FromSeq == 0) {
		return res, errors.New("replay: give either a time to replay since or a sequence to replay from")
	}
	candidates := slices.Clone(SourceStreams)
	if opts.Stream != "" {
		candidates = []string{opts.Stream}
	}
	var info *jetstream.ConsumerInfo
	for _, name := range candidates {
		cons, err := js.Consumer(ctx, name, opts.Consumer)
		// A name NATS refuses (a.b, "my consumer") names no consumer either.
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
			errors.Is(err, jetstream.ErrInvalidConsumerName) || errors.Is(err, jetstream.ErrInvalidStreamName) {
			continue
		}
		if err != nil {
			return res, fmt.Errorf("consumer %s on %s: %w", opts.Consumer, name, err)
		}
		info, res.Stream = cons.CachedInfo(), name
		break
	}
	if info == nil {
		known, err := Consumers(ctx, js)
		if err != nil {
			return res, err
		}
		return res, fmt.Errorf("replay: %w", &UnknownConsumerError{Name: opts.Consumer, Streams: candidates, Known: known})
	}
	if _, err := js.Consumer(ctx, RedriveStream, opts.Consumer); err != nil {
		return res, fmt.Errorf("replay: consumer %s does not read %s (%w): it must be a consumer-kit consumer that has run at least once", opts.Consumer, RedriveStream, err)
	}
	st, err := js.Stream(ctx, res.Stream)
	if err != nil {
		return res, fmt.Errorf("stream %s: %w", res.Stream, err)
	}
	sinfo, err := st.Info(ctx)
	if err != nil {
		return res, fmt.Errorf("stream %s: %w", res.Stream, err)
	}
	end := sinfo.State.LastSeq
	if end == 0 || opts.FromSeq > end {
		return res, nil
	}

	occ := jetstream.OrderedConsumerConfig{FilterSubjects: info.Config.FilterSubjects}
	if info.Config.FilterSubject != "" {
		occ.FilterSubjects = []string{info.Config.FilterSubject}
	}
	if opts.FromSeq > 0 {
		occ.DeliverPolicy, occ.OptStartSeq = jetstream.DeliverByStartSequencePolicy, opts.FromSeq
	} else {
		since := opts.Since
		occ.DeliverPolicy, occ.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	reader, err := st.OrderedConsumer(ctx, occ)
	if err != nil {
		return res, fmt.Errorf("read %s: %w", res.Stream, err)
	}
	run := nats.NewInbox()[len(nats.InboxPrefix):] // unique per replay run
	var acks []jetstream.PubAckFuture
	empty := 0 // fetches in a row that brought nothing while events remained
	for done := false; !done; {
		batch, err := replayFetch(reader)
		if err != nil {
			return res, fmt.Errorf("read %s: %w", res.Stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return res, err
			}
			seq := meta.Sequence.Stream
			if seq > end {
				done = true
				break
			}
			if res.First == 0 {
				res.First = seq
			}
			raw := &jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: seq, Header: m.Headers(), Data: m.Data()}
			msg := redriveMsg(opts.Consumer, m.Subject(), raw, "replay:"+run+":"+strconv.FormatUint(seq, 10), res.Stream, seq, "replay")
			msg.Header.Set(HeaderReplayFrom, strconv.FormatUint(res.First, 10))
			ack, err := js.PublishMsgAsync(msg)
			if err != nil {
				return res, fmt.Errorf("replay %s #%d: %w", res.Stream, seq, err)
			}
			acks = append(acks, ack)
			res.Last, res.Count = seq, res.Count+1
			if seq == end || meta.NumPending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return res, fmt.Errorf("read %s: %w", res.Stream, err)
		}
		if got > 0 {
			empty = 0
			continue
		}
		// An empty fetch ends the replay only when the reader has nothing
		// left: on a busy server a fetch can come back empty with events
		// still to read.
		if done, err = readerDrained(ctx, reader); err != nil {
			return res, fmt.Errorf("read %s after #%d: %w", res.Stream, res.Last, err)
		}
		if empty++; !done && empty == replayStallFetches {
			again := "run it again with the same start time"
			if next := max(res.Last+1, opts.FromSeq); res.Last > 0 || opts.FromSeq > 0 {
				again = fmt.Sprintf("run it again from #%d", next)
			}
			return res, fmt.Errorf("read %s: nothing delivered in %d fetches of %s although events remain; %d replayed; %s",
				res.Stream, empty, replayFetchWait, res.Count, again)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return res, ctx.Err()
	}
	if err := checkNoneRemoved(ctx, st, res, opts, sinfo.State.FirstSeq, end); err != nil {
		return res, err
	}
	for _, a := range acks {
		select {
		case err := <-a.Err():
			return res, fmt.Errorf("replay: publish to %s: %w", RedriveStream, err)
		default:
		}
	}
	return res, nil
}

// checkNoneRemoved fails a replay that ended short of end because the
// stream lost events before the replay read them (a purge, or its max age
// passing during a long replay): a count of what was read must not pass
// for a replay of the range asked for. The replay's next sequence is
// known once it replayed one event, or when it started from a sequence:
// from the stream's first one at the start (firstSeq) if that is later,
// events gone before the replay began being none it failed to read, as
// when it replays one.
func checkNoneRemoved(ctx context.Context, st jetstream.Stream, res ReplayResult, opts ReplayOptions, firstSeq, end uint64) error {
	next := opts.FromSeq
	if next > 0 {
		next = max(next, firstSeq)
	}
	if res.Count > 0 {
		next = res.Last + 1
	}
	if next == 0 || next > end {
		return nil
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s after the replay: %w", res.Stream, err)
	}
	first := info.State.FirstSeq
	if first <= next {
		return nil
	}
	replayed := "none replayed"
	if res.Count > 0 {
		replayed = fmt.Sprintf("%d replayed (#%d to #%d)", res.Count, res.First, res.Last)
	}
	return fmt.Errorf("replay: events #%d to #%d of %s were removed (purged or aged out) before the replay read them, so any of them the consumer takes were not replayed; %s",
		next, min(first-1, end), res.Stream, replayed)
}

// How long one fetch of a replay waits for events, and how many empty
// fetches in a row, with events still pending, end it with an error.
const replayFetchWait = time.Second

var replayStallFetches = 30

// replayFetch takes the next events of a replay (a variable for the tests,
// which make it come back empty).
var replayFetch = func(reader jetstream.Consumer) (jetstream.MessageBatch, error) {
	return reader.Fetch(256, jetstream.FetchMaxWait(replayFetchWait))
}

// readerDrained reports whether an ordered consumer has no event left to
// deliver. One that was never created (its first fetch failed to reach the
// server) has not drained.
func readerDrained(ctx context.Context, reader jetstream.Consumer) (bool, error) {
	info, err := reader.Info(ctx)
	if errors.Is(err, jetstream.ErrOrderedConsumerNotCreated) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return info.NumPending == 0, nil
}
