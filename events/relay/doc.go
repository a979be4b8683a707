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
// A relay that holds the lock but whose NATS connection is down (a
// partition between its host and the bus) would otherwise keep the lock,
// its session alive, while nothing is published. (A connection that is up
// while JetStream does not answer is not noticed this way: its publishes
// fail and are retried, and the lock stays.) Once its connection has been
// down for HandoverAfter (30 seconds) it gives the lock up, and it tries
// the lock again only while connected: a standby that can publish takes
// over, and a lone relay takes the lock back when NATS returns.
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
//     row (taking the next id) until it commits (activities/emit.go; the
//     step's one statement inserts the outbox row from the output of its
//     UPDATE of the order row, so the lock comes first, and order.placed is
//     written by the statement that creates the order). So
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
//     or an earlier one (marked, or being marked: see 3); an
//     acknowledgement means the
//     stream holds the message (on disk at once when the server syncs
//     every write, at its next sync otherwise: see "When the stream loses
//     what it acknowledged" below).
//  3. Rows are marked published only after their acknowledgement, with
//     published_at = when the batch's last acknowledgement was read, on
//     the database's clock (the mark subtracts the time since then from
//     its statement_timestamp()). A crash
//     between the acknowledgement and the mark leaves them unpublished; the
//     next active relay sends them again with the same Nats-Msg-Id and the
//     stream drops the copy (duplicate window: events.DefaultDuplicateWindow),
//     acknowledging it as a duplicate, so the order in the stream is that of
//     the first copies, which (2) keeps. The relay's session commits
//     asynchronously (it does not wait for the WAL flush), so an OS crash
//     or power loss of the database can also undo its last marks (at most
//     about three wal_writer_delay, 600 ms by default): the same case, those
//     rows are sent again and dropped as duplicates. While rows keep
//     coming (a batch came back full, or a writer kicked the relay while
//     it was sent), a batch's mark runs on the session right after the
//     next batch's claim, while that batch is sent: a backlog drains at
//     the pace of claim + max(send, mark) rather than claim + send +
//     mark, and new rows do not wait for the previous batch's mark. That
//     claim leaves the rows still to be marked out by id, so none is sent
//     twice, and the mark is awaited before the batch's own
//     acknowledgements are handed on (AfterPublish, their own mark).
//     Failed rows are not left out: they are claimed again, ahead of their
//     successors. Any other statement (re-publish, retention, statistics,
//     a ping while NATS is down), and a stop, comes after the mark; a stop
//     sends no further wave.
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
// # When the stream loses what it acknowledged
//
// A NATS server that syncs its file store periodically (the embedded one
// every second by default, events/natsdev; NATS's own default is every two
// minutes) acknowledges a message once the operating system holds it and
// puts it on disk at its next sync. A crash of the server's process loses
// nothing; a power loss or an OS crash loses what was acknowledged since
// the last completed sync, rows the relay may have marked published. The
// outbox is the system of record and keeps published rows for Retention
// (seven days), so the relay restores them. With RepublishWindow set (cmd
// sets it to the sync interval plus DefaultRepublishMargin, six seconds;
// zero when NATS syncs every write), each time the relay becomes the
// active one, and whenever its NATS connection has reconnected since
// (the server may be a restarted one), it re-publishes before it sends
// anything new:
//
//  1. M = max(published_at) is when the relay last published. After a
//     crash nothing is published until the restart, so M is about the
//     time of the crash, however long the outage (a window relative to
//     now() would miss the tail after a long one).
//  2. The window is the rows published at or after M - RepublishWindow.
//  3. The relay reads, headers only, the Nats-Msg-Id of every message the
//     stream holds from a little before the window's start (5 s, for the
//     NATS server's clock against the database's), and publishes again, in
//     id order, in waves (see Order) and a page of BatchSize rows at a
//     time, the window's rows the stream does not hold. Until every one is
//     acknowledged it publishes nothing new; a failure is retried with
//     backoff. Once all are back, each row the stream took as new gets a
//     new published_at (the re-publish's last acknowledgement): it is
//     again among the stream's newest messages, which a crash soon after
//     must find in its window. Not before: a re-publish that fails half
//     way is retried over the same window, since M has not moved.
//
// Every lost row is in the window. The file store syncs every SyncInterval
// I, arming the next sync once the last has finished, so a message
// acknowledged at time a is on disk at the latest when the first sync that
// starts after a ends: a + I + 2d, d the time one sync takes. A message
// lost by a crash at T was therefore acknowledged after T - I - 2d. Its
// row's published_at is its batch's last acknowledgement, no earlier than
// its own. And M is no later than T plus the mark's latency: one
// connection's publishes to a stream are acknowledged in order and the
// relay reads them in order, so it never reads an acknowledgement long
// after it came (it only waits on one that is missing, and none come after
// a missing one). So the lost row's published_at > M - I - 2d - latency,
// inside the window as long as the margin (5 s) covers two syncs, the
// mark's latency and small clock steps. All published_at values are read
// from one clock, the database's, whichever host each relay ran on. A disk
// that stalls a sync for longer than the margin can lose more than the
// window covers: the limit of the scheme, which syncing every write does
// not have. So is a double fault: a server process that crashed leaves its
// unsynced writes to the OS's writeback (within about 30 s on Linux), and
// its restarted successor does not sync the blocks it did not write to; a
// power loss in those seconds, once new publishing has moved M on, can
// lose them outside the window.
//
// Order holds. The file store appends each stream's messages to its
// blocks in stream order and syncs them in that order; on restart it cuts
// a block at its first torn record and rebuilds the stream from the
// records left. So what a power loss takes is a suffix of the stream:
// every survivor precedes every lost message. A lost row's predecessors in
// its order are survivors, ahead of it in the stream, or lost too, hence in
// the window and re-published before it (id order is version order within
// an order). Its successors were acknowledged after it, so they are lost
// too (re-published after it) or were never published (sent after the
// re-publish). The suffix rests on the OS writing back a file's pages, and
// the stream's successive block files, in order between syncs, which POSIX
// does not promise: if it wrote a later block before an earlier block's
// tail and then lost power, the loss would have a hole, and re-published
// events would land after successors that survived. Ordered consumers
// (events/consumer) still apply them in order, since they hold an event
// back until its aggregate's previous ce-sequence is taken; the stream's
// own order is then off for those events.
//
// Exactly the lost events come back. Reading what the stream holds sends
// only those, however long after the crash the relay comes back. JetStream
// rebuilds a restarted stream's duplicate window from the messages it
// still has, so it has forgotten the lost ones and takes them as new. When
// the stream cannot be read (a relay without permission to create a
// consumer on it, say), the relay sends the whole window and the stream's
// duplicate window (one hour, Nats-Msg-Id = event_id) drops the copies of
// what survived; a re-publish more than an hour after the crash then puts
// those survivors in the stream a second time, duplicates the consumers
// drop by event ID in their inbox.
//
// The re-publish is bounded by the window: RepublishWindow worth of
// publishing, at most about 240,000 rows at the highest drain measured on
// a fresh stack (about 40,000 events a second; docs/PERFORMANCE.md) and
// the default six seconds, far fewer at ordinary rates.
// BenchmarkTakeoverRepublish checks a 50,000-event window in about
// 0.65 s, 0.7 s when 10,000 of them were lost.
//
// # A NATS server that restarts under a running relay
//
// When NATS runs on a host of its own, it can lose power while the relay
// runs on, still active: no new term, so the relay watches its
// connection's reconnect count instead. Before every batch, and before
// every wave of one, it compares the count with the one at its last
// re-publish; if it changed, it stops sending and re-publishes first. For
// that the connection must not buffer publishes while it reconnects
// (nats.ReconnectBufSize(-1), as cmd connects): the client flushes such a
// buffer to the new server as part of reconnecting, before the relay can
// re-publish; New warns when the connection buffers. One gap remains: a
// reconnection that completes between the check and the sends of a wave
// (the microseconds a wave takes to send) lets that wave reach a restarted
// server before the re-publish, so one of its events may precede a lost
// predecessor; ordered consumers cope as above. Closing it would take a
// relay that owns a connection which never reconnects by itself.
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
