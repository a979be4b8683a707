// Package consumer is the kit other bounded contexts consume orderflow's
// events with, and the operator's tools over it: dead letters, redrive,
// replay and tail.
//
// # Taking an event exactly once
//
// A Consumer is a durable JetStream pull consumer with explicit acks, a
// BackOff, MaxDeliver and a bounded MaxAckPending. Each event runs the
// context's Handler inside the consumer's own PostgreSQL transaction,
// together with the insert of an inbox row keyed by (consumer, event id);
// the message is acknowledged only after the commit. A redelivered event
// finds its inbox row and is acknowledged without a second effect, so the
// handler's writes happen exactly once although JetStream delivers at least
// once.
//
// # What happens when a handler fails
//
//   - A transient error (any error) is retried: NakWithDelay along the
//     Backoff schedule, never a bare Nak, which would redeliver at once
//     and burn MaxDeliver in milliseconds.
//   - A poison message is terminated (Term, with a reason): one that is not
//     a CloudEvent (events.Decode fails), one whose payload Validate
//     refuses, one whose handler returns an error wrapped by Permanent.
//   - On its last delivery (MaxDeliver) a message that would be retried is
//     terminated instead, with the last error as the reason, so the dead
//     letter says why.
//   - RetryAfter asks for a redelivery at a given time without counting as a
//     failure (the simulated courier waits for its delivery time that way,
//     which survives restarts where a sleep would not).
//
// # Order per aggregate
//
// An Ordered consumer checks the ce-sequence extension (the aggregate's
// version) per aggregate (ce-source and ce-subject): it takes an event only
// when it has taken its predecessor, sequence-1, and otherwise holds it back
// with NakWithDelay until it has. The aggregate's row in inbox_sequences is
// locked for the transaction, so concurrent workers and processes take one
// aggregate's events one at a time, in order. Messages are dispatched to
// workers by aggregate, so one process never reorders an aggregate itself.
// A message waiting in its worker's queue is kept in progress (its AckWait
// restarted), so one waiting behind a slow handler is not delivered again
// while it waits.
// An ordered consumer reads the whole stream (its inbox records the types it
// ignores), since a filtered one would see gaps by design.
//
// An aggregate seen for the first time with a sequence above 1 (the consumer
// was created after the aggregate's first events aged out of the stream, or
// a replay starts in the middle of its history) does not wedge: the kit asks
// the stream for the aggregate's first event at or after the consumer's
// start (the stream's first message, or a replay's first sequence). If that
// is this event, nothing earlier can still arrive from the stream, and after
// Config.AdoptAfter deliveries (time for a producer that published out of
// order) the consumer adopts the aggregate at this sequence
// (Stats.Adopted). If an earlier event of the
// aggregate is in range, it is still on its way (in flight, being retried,
// or in the dead letters) and this one is held back.
//
// An event older than what the consumer has taken of its aggregate (only
// possible after an adoption) is acknowledged without effect (stale). An
// event held back through all its deliveries is dead-lettered, and so is
// every later event of that aggregate: a redrive, in stream order, applies
// them in order once the first one goes through.
//
// # Dead letters, redrive and replay
//
// EnsureStreams creates DEAD_LETTERS, a stream that captures JetStream's
// max-deliveries and terminated advisories, and EVENTS_REDRIVE, where each
// consumer has a subject of its own, orderflow.redrive.<consumer>.<original
// subject>, which the kit consumes alongside its stream. DeadLetters lists
// the dead letters with the original event each names; Redrive republishes
// the events to their consumer's redrive subject, each consumer's in
// original stream order, and removes them from DEAD_LETTERS once the
// publish is acknowledged. A copy that fails again is dead-lettered as a
// message of EVENTS_REDRIVE, which keeps it a week while DEAD_LETTERS
// keeps the entry 30 days; the kit starts the reason it terminates a copy
// with where the original is ("original ORDER_EVENTS #41: ", with
// "replay-from #N" for a replay's copy), and once the copy has aged out
// DeadLetters looks the event up there, and Redrive copies it from there.
// Replay republishes a range of the archive the same way, to
// one consumer only: the inbox turns events it already took into no-ops, so
// a replay matters to a consumer that lost or reset its state, a consumer
// that must see events from before it existed, or a handler fixed after it
// ignored events (whose inbox rows are deleted first). Tail prints events
// live in the CloudEvents JSON format.
package consumer
