package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/events/consumer"
)

const eventsUsage = `Usage: orderflow events <command> [flags]

Inspect and repair the event bus, at NATS_URL or else the dev default
(nats://ORDERFLOW_NATS_ADDR, nats://127.0.0.1:4222).

  tail [--subject S] [--all | --since T]
      print events live, one per line, in the CloudEvents JSON format
  replay --consumer NAME (--since T | --from-seq N) [--stream S]
      redeliver the archive from T or N, in order, to that consumer only; it
      takes events it already took as no-ops (for a consumer whose state was
      reset or restored, or that must see events from before it existed)
  dlq list [--consumer NAME] [--json]
      list the dead letters: which consumer gave up on which event, and why
  dlq redrive [--consumer NAME]
      hand the dead letters back to their consumers, in original stream
      order, and remove them from the dead letters
  dlq skip ENTRY...
      hand entries back as skips: their consumer records them without
      effect, or drops a message that is not a CloudEvent (for an event
      that can never go through)

T is a time (2026-03-14T12:00:00Z, 2026-03-14) or a duration back from now (10m).
`

// runEvents is `orderflow events`: the consumer kit's operator tools.
func runEvents(ctx context.Context, cfg Config, logger *slog.Logger, args []string) error {
	return eventsCommand(ctx, cfg, logger, args, os.Stdout)
}

// eventsCommand runs one events command, writing its output to out. A
// mistake in the arguments is a *usageError.
func eventsCommand(ctx context.Context, cfg Config, logger *slog.Logger, args []string, out io.Writer) error {
	// Usage asked for goes to out, as --help's does; usage after a
	// mistake to stderr, by Main.
	if len(args) == 0 {
		return &usageError{err: errors.New("orderflow events: no command"), usage: eventsUsage}
	}
	if isHelp(args[0]) {
		fmt.Fprint(out, eventsUsage)
		return nil
	}
	// The connection is opened once a command has read its arguments: a
	// mistyped command or a -h is answered without a server.
	var nc *nats.Conn
	defer func() {
		if nc != nil {
			nc.Close()
		}
	}()
	connect := func() (jetstream.JetStream, error) {
		if err := cfg.Valid(); err != nil {
			return nil, err
		}
		url := cfg.NATSURL
		if url == "" {
			url = "nats://" + cfg.NATSAddr
		}
		var err error
		nc, err = nats.Connect(url, nats.Name("orderflow events"))
		if err != nil {
			return nil, fmt.Errorf("connect to nats at %s: %w (is orderflow dev running? set NATS_URL for another server)", url, err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, fmt.Errorf("jetstream: %w", err)
		}
		return js, nil
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "tail":
		err = eventsTail(ctx, connect, logger, rest, out)
	case "replay":
		err = eventsReplay(ctx, connect, rest, out)
	case "dlq":
		if len(rest) == 0 {
			return &usageError{err: errors.New("orderflow events dlq: list, redrive or skip?"), usage: eventsUsage}
		}
		if isHelp(rest[0]) {
			fmt.Fprint(out, eventsUsage)
			return nil
		}
		switch rest[0] {
		case "list":
			err = dlqList(ctx, connect, rest[1:], out)
		case "redrive":
			err = dlqRedrive(ctx, connect, rest[1:], out)
		case "skip":
			err = dlqSkip(ctx, connect, rest[1:], out)
		default:
			return &usageError{err: fmt.Errorf("orderflow events dlq: unknown command %q (list, redrive or skip)", rest[0]), usage: eventsUsage}
		}
	default:
		return &usageError{err: fmt.Errorf("orderflow events: unknown command %q", cmd), usage: eventsUsage}
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil // the flag set printed the command's usage
	}
	return err
}

// checkSubject tells what is wrong with a subject filter: NATS refuses
// empty tokens, white space and a > before the last token; a * or > inside
// a token is literal to NATS, but no orderflow subject has one, so it is
// taken for a mistyped wildcard.
func checkSubject(subject string) error {
	if subject == "" {
		return errors.New("empty (leave --subject out for every event)")
	}
	tokens := strings.Split(subject, ".")
	for i, tok := range tokens {
		switch {
		case tok == "":
			return errors.New("an empty token (two dots, or one at an end)")
		case strings.ContainsAny(tok, " \t\n\f\r"):
			return errors.New("white space")
		case tok == ">" && i != len(tokens)-1:
			return errors.New("> must be the last token")
		case tok != "*" && tok != ">" && strings.ContainsAny(tok, "*>"):
			return errors.New("* and > stand only as whole tokens (orderflow.order.*)")
		}
	}
	return nil
}

// connector opens the connection an events command works on.
type connector func() (jetstream.JetStream, error)

func eventsTail(ctx context.Context, connect connector, logger *slog.Logger, args []string, out io.Writer) error {
	fs := flagSet("tail")
	subject := fs.String("subject", "orderflow.>", "only events on this subject (NATS wildcards * and >)")
	all := fs.Bool("all", false, "start at the first event the streams hold")
	since := fs.String("since", "", "start at this time or this long ago")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if *all && *since != "" {
		return usagef(fs, "give --all or --since, not both")
	}
	if err := checkSubject(*subject); err != nil {
		return usagef(fs, "--subject %q: %w", *subject, err)
	}
	opts := consumer.TailOptions{Subject: *subject, All: *all, Logger: logger}
	if *since != "" {
		t, err := parseSince(*since)
		if err != nil {
			return usagef(fs, "%w", err)
		}
		opts.Since = t
	}
	js, err := connect()
	if err != nil {
		return err
	}
	err = consumer.Tail(ctx, js, opts, out)
	if notHeld, ok := errors.AsType[*consumer.SubjectNotHeldError](err); ok {
		return usagef(fs, "--subject %q: %w", *subject, notHeld)
	}
	return err
}

func eventsReplay(ctx context.Context, connect connector, args []string, out io.Writer) error {
	fs := flagSet("replay")
	name := fs.String("consumer", "", "the durable consumer to replay to (required)")
	since := fs.String("since", "", "replay the events stored since this time or this long ago")
	from := fs.Uint64("from-seq", 0, "replay from this stream sequence")
	stream := fs.String("stream", "", "the consumer's stream (default: whichever of "+strings.Join(consumer.SourceStreams, ", ")+" has it)")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if *name == "" {
		// Told which consumers there are, if the server answers.
		if js, err := connect(); err == nil {
			if known, err := consumer.Consumers(ctx, js); err == nil && len(known) > 0 {
				return usagef(fs, "--consumer is required (consumers: %s)", strings.Join(known, ", "))
			}
		}
		return usagef(fs, "--consumer is required")
	}
	if (*since == "") == (*from == 0) {
		return usagef(fs, "give --since or --from-seq, one of them")
	}
	// NATS's rule for stream names: a subject typed for a stream
	// (orderflow.order) names none, a mistake of the arguments.
	if strings.ContainsAny(*stream, ">*. /\\\t\r\n") {
		return usagef(fs, "--stream %q is not a stream name (%s)", *stream, strings.Join(consumer.SourceStreams, ", "))
	}
	opts := consumer.ReplayOptions{Consumer: *name, Stream: *stream, FromSeq: *from}
	if *since != "" {
		t, err := parseSince(*since)
		if err != nil {
			return usagef(fs, "%w", err)
		}
		opts.Since = t
	}
	js, err := connect()
	if err != nil {
		return err
	}
	res, err := consumer.Replay(ctx, js, opts)
	var unknown *consumer.UnknownConsumerError
	if errors.As(err, &unknown) {
		return usagef(fs, "%w", unknown)
	}
	if err != nil {
		return err
	}
	if res.Count == 0 {
		fmt.Fprintf(out, "nothing to replay to %s from %s\n", res.Consumer, res.Stream)
		return nil
	}
	fmt.Fprintf(out, "replayed %d events of %s (#%d to #%d) to %s\n", res.Count, res.Stream, res.First, res.Last, res.Consumer)
	return nil
}

func dlqList(ctx context.Context, connect connector, args []string, out io.Writer) error {
	fs := flagSet("dlq list")
	name := fs.String("consumer", "", "only this consumer's dead letters")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	js, err := connect()
	if err != nil {
		return err
	}
	dead, err := consumer.DeadLetters(ctx, js, *name)
	if err != nil {
		return err
	}
	if len(dead) == 0 {
		if err := checkConsumer(ctx, js, fs, *name); err != nil {
			return err
		}
	}
	if *asJSON {
		return writeDeadLettersJSON(out, dead)
	}
	if len(dead) == 0 {
		fmt.Fprintln(out, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTRY\tDEAD-LETTERED\tCONSUMER\tSTREAM #SEQ\tTYPE\tSUBJECT\tEVENT ID\tWHY")
	for _, d := range dead {
		where := fmt.Sprintf("%s #%d", d.OriginalStream, d.OriginalSeq)
		if d.Stream != d.OriginalStream {
			where += fmt.Sprintf(" (via %s #%d)", d.Stream, d.StreamSeq)
		}
		why := d.Why()
		if d.LookupErr != "" {
			why += " [event: " + d.LookupErr + "]"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Seq, d.Time.UTC().Format(time.RFC3339), d.Consumer, where,
			orDash(d.EventType), orDash(d.Subject), orDash(d.EventID), why)
	}
	return tw.Flush()
}

func writeDeadLettersJSON(w io.Writer, dead []consumer.DeadLetter) error {
	enc := json.NewEncoder(w)
	for _, d := range dead {
		if err := enc.Encode(map[string]any{
			"entry": d.Seq, "dead_lettered_at": d.Time.UTC(), "kind": d.Kind, "consumer": d.Consumer,
			"stream": d.OriginalStream, "stream_seq": d.OriginalSeq, "read_from": d.Stream, "read_seq": d.StreamSeq,
			"deliveries": d.Deliveries, "why": d.Why(), "event_id": d.EventID, "event_type": d.EventType,
			"subject": d.Subject, "lookup_error": d.LookupErr,
		}); err != nil {
			return err
		}
	}
	return nil
}

func dlqRedrive(ctx context.Context, connect connector, args []string, out io.Writer) error {
	fs := flagSet("dlq redrive")
	name := fs.String("consumer", "", "only this consumer's dead letters")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	js, err := connect()
	if err != nil {
		return err
	}
	res, err := consumer.Redrive(ctx, js, consumer.RedriveOptions{Consumer: *name})
	if err == nil && len(res.Redriven)+len(res.Left) == 0 {
		if err := checkConsumer(ctx, js, fs, *name); err != nil {
			return err
		}
	}
	return report(out, false, res, err)
}

// checkConsumer refuses a --consumer that has no dead letters when it
// names no kit consumer either: a mistyped name, which would otherwise
// read as "no dead letters". A name with dead letters is never refused:
// its consumer may be gone, or not of the kit, and its entries still
// there.
func checkConsumer(ctx context.Context, js jetstream.JetStream, fs *flag.FlagSet, name string) error {
	if name == "" {
		return nil
	}
	known, err := consumer.Consumers(ctx, js)
	if err != nil || slices.Contains(known, name) {
		return err
	}
	consumers := "no kit consumer has run on this server"
	if len(known) > 0 {
		consumers = "consumers: " + strings.Join(known, ", ")
	}
	return usagef(fs, "no consumer %q: none of that name has run, and none has dead letters (%s)", name, consumers)
}

func dlqSkip(ctx context.Context, connect connector, args []string, out io.Writer) error {
	fs := flagSet("dlq skip")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var entries []uint64
	for _, a := range fs.Args() {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			return usagef(fs, "%q is not an entry number (see orderflow events dlq list)", a)
		}
		entries = append(entries, n)
	}
	if len(entries) == 0 {
		return usagef(fs, "name the entries to skip (see orderflow events dlq list)")
	}
	slices.Sort(entries)
	entries = slices.Compact(entries)
	js, err := connect()
	if err != nil {
		return err
	}
	res, err := consumer.Redrive(ctx, js, consumer.RedriveOptions{Only: entries, Skip: true})
	if err != nil || len(res.Redriven)+len(res.Left) > 0 {
		if err := report(out, true, res, err); err != nil {
			return err
		}
	}
	var missing []string
	for _, e := range entries {
		if !slices.ContainsFunc(res.Redriven, func(d consumer.DeadLetter) bool { return d.Seq == e }) &&
			!slices.ContainsFunc(res.Left, func(d consumer.DeadLetter) bool { return d.Seq == e }) {
			missing = append(missing, strconv.FormatUint(e, 10))
		}
	}
	if len(missing) > 0 {
		return usagef(fs, "no dead letter entry %s (see orderflow events dlq list)", strings.Join(missing, ", "))
	}
	return nil
}

// report prints what a redrive, or with skip a dlq skip, did to out.
func report(out io.Writer, skip bool, res consumer.RedriveResult, err error) error {
	for _, d := range res.Redriven {
		// A skip hands the entry back too, but the consumer records it
		// without effect (or drops it, if it is not a CloudEvent).
		if skip {
			fmt.Fprintf(out, "skipped entry %d for %s: %s\n", d.Seq, d.Consumer, describe(d))
		} else {
			fmt.Fprintf(out, "handed back entry %d to %s: %s\n", d.Seq, d.Consumer, describe(d))
		}
	}
	for _, d := range res.Left {
		fmt.Fprintf(out, "left entry %d (%s, %s #%d): %s\n", d.Seq, d.Consumer, d.OriginalStream, d.OriginalSeq, d.LookupErr)
	}
	if err == nil && len(res.Redriven)+len(res.Left) == 0 {
		fmt.Fprintln(out, "no dead letters")
	}
	return err
}

// describe names a dead letter's event, or says it is not a CloudEvent.
func describe(d consumer.DeadLetter) string {
	what := strings.TrimSpace(d.EventType + " " + d.EventID)
	if what == "" {
		what = "a message without CloudEvent headers on " + d.Subject
	}
	return fmt.Sprintf("%s (%s #%d)", what, d.OriginalStream, d.OriginalSeq)
}

func flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("orderflow events "+name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}

// parseFlags parses a command's flags; a mistake in them, which the flag
// set has printed with the command's usage, is a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return &usageError{err: fmt.Errorf("%s: %w", fs.Name(), err), printed: true}
	}
	return err
}

// parseFlagsOnly parses the flags of a command that takes no other
// arguments.
func parseFlagsOnly(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		// The flags after it went unread too.
		return usagef(fs, "takes flags only, not %q", fs.Arg(0))
	}
	return nil
}

// usagef is a usage error of the command whose flags fs reads.
func usagef(fs *flag.FlagSet, format string, args ...any) error {
	return &usageError{err: fmt.Errorf(fs.Name()+": "+format, args...)}
}

// parseSince reads a time, a date, or a duration back from now.
func parseSince(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return time.Now().Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: want a time (2026-03-14T12:00:00Z), a date (2026-03-14) or a duration (10m)", s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
