package tests_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/consumer"
	"github.com/orderflow/orderflow/inbound"
	"github.com/orderflow/orderflow/tests/apptest"
)

// busEvent is one event as the stream holds it.
type busEvent struct {
	events.Envelope
	// Stream and Stored say where and when the stream stored it: a stream
	// that lost the event and had it published again holds it anew.
	Stream jetstream.SequencePair
	Stored time.Time
}

// busEvents reads every event of one order from ORDER_EVENTS, in stream
// order, waiting until there are want of them.
func busEvents(t *testing.T, js jetstream.JetStream, orderID string, want int) []busEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []busEvent
	for ctx.Err() == nil {
		got = got[:0]
		cons, err := js.OrderedConsumer(ctx, events.OrderStream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{events.Subject("order.*", orderID)},
		})
		if err != nil {
			t.Fatalf("ordered consumer: %v", err)
		}
		for {
			batch, err := cons.FetchNoWait(100)
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
			n := 0
			for m := range batch.Messages() {
				n++
				env, err := events.Decode(m.Headers(), m.Data())
				if err != nil {
					t.Fatalf("order %s: message on %s is not a CloudEvent: %v", orderID, m.Subject(), err)
				}
				meta, err := m.Metadata()
				if err != nil {
					t.Fatalf("order %s: metadata of the message on %s: %v", orderID, m.Subject(), err)
				}
				got = append(got, busEvent{Envelope: env, Stream: meta.Sequence, Stored: meta.Timestamp})
			}
			if n == 0 {
				break
			}
		}
		if len(got) >= want {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("order %s: %d events on the bus after 30s; want %d", orderID, len(got), want)
	return nil
}

// checkBus compares an order's events on the bus with its outbox (GET
// /v1/orders/{id}/events): the same events, in ce-sequence order 1..n with
// no gap or duplicate, each with the CloudEvents attributes and a payload
// that validates against its type's JSON Schema. Every test that ends an
// order calls it, so every path's events are checked. It returns them as
// the stream holds them.
func checkBus(t *testing.T, app *apptest.App, js jetstream.JetStream, orderID string) []busEvent {
	t.Helper()
	resp := app.Do(t, http.MethodGet, "/v1/orders/"+orderID+"/events", nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("GET events = %d %s", resp.Status, resp.Body)
	}
	var outbox []struct {
		EventID  string `json:"event_id"`
		Type     string `json:"type"`
		CEType   string `json:"ce_type"`
		Sequence int64  `json:"sequence"`
	}
	resp.JSON(t, &outbox)
	bus := busEvents(t, js, orderID, len(outbox))
	if len(bus) != len(outbox) {
		t.Fatalf("order %s: %d events on the bus, %d in the outbox", orderID, len(bus), len(outbox))
	}
	for i, env := range bus {
		o := outbox[i]
		switch {
		case env.Sequence != int64(i+1):
			t.Errorf("order %s: event %d on the bus has ce-sequence %d; want %d", orderID, i, env.Sequence, i+1)
		case env.ID != o.EventID || env.Type != o.CEType:
			t.Errorf("order %s: bus event %d is %s %s; outbox has %s %s", orderID, i, env.ID, env.Type, o.EventID, o.CEType)
		case env.Subject != orderID || env.Source != events.SourceOrders || env.Time.IsZero() || env.Traceparent == "":
			t.Errorf("order %s: event %s lacks CloudEvents attributes: subject %q source %q time %v traceparent %q",
				orderID, env.ID, env.Subject, env.Source, env.Time, env.Traceparent)
		}
		if err := events.ValidatePayload(env.EventType(), env.Data); err != nil {
			t.Errorf("order %s: %s payload does not validate against its schema: %v\n%s", orderID, env.Type, err, env.Data)
		}
	}
	return bus
}

func jetStream(t *testing.T, app *apptest.App) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(app.Env.NATS)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestCompletedOrderReachesOtherContexts follows one order through the
// choreography: its events on the bus in order, the delivery context's
// delivery.completed completing it through the inbound consumer, one
// voucher from promotions, and the restaurant's stats counting it.
func TestCompletedOrderReachesOtherContexts(t *testing.T) {
	app := apptest.Start(t)
	js := jetStream(t, app)
	statsBefore := restaurantStats(t, app, pizzeria)

	p := place(t, app, orderRequest(pizzeria, diavola, 1, "tok_visa"))
	waitStatus(t, app, p.ID, "awaiting_acceptance")
	mustDecide(t, app, p.ID, "accept", nil, "accepted")

	// The delivery context reports the delivery on the bus, twice: the
	// second copy as a courier app that retried with a fresh message ID
	// would send it, so the stream keeps both. The order completes once,
	// through the inbound consumer, whose inbox holds the event applied.
	// (That the copy is then dropped as a duplicate, rather than sent to
	// the workflow again, is checked by inbound's TestDeliveredIsIdempotent,
	// which sees the consumer's outcomes.)
	if err := publishDelivered(js, p.ID, ""); err != nil {
		t.Fatal(err)
	}
	if err := publishDelivered(js, p.ID, "-retry"); err != nil {
		t.Fatal(err)
	}
	o := finish(t, app, p.ID, "")
	if o.Status != "completed" {
		t.Fatalf("order is %q after delivery.completed; want completed", o.Status)
	}
	if o.Payment.Status != "captured" {
		t.Errorf("payment %q; want captured", o.Payment.Status)
	}
	checkBus(t, app, js, p.ID)
	// The inbox row commits once the Update has returned: it may follow
	// the completion by a moment.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var applied int
		if err := app.Env.Store.DB.QueryRow(
			`SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2 AND outcome = 'applied'`,
			inbound.DeliveriesConsumer, events.DeliveryEventID(p.ID, events.DeliveryCompleted).String()).Scan(&applied); err != nil {
			t.Fatalf("read the inbound inbox: %v", err)
		}
		if applied == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("inbound consumer's inbox has no applied delivery.completed of %s", p.ID)
		}
	}

	vouchers := waitVouchers(t, app, customer, p.ID)
	if vouchers[p.ID] != 1 {
		t.Errorf("customer has %d vouchers for order %s; want exactly 1", vouchers[p.ID], p.ID)
	}
	waitStats(t, app, pizzeria, stats{Placed: statsBefore.Placed + 1, Accepted: statsBefore.Accepted + 1})
}

type stats struct {
	Placed   int `json:"placed"`
	Accepted int `json:"accepted"`
}

// waitStats waits until the restaurant's stats count at least want, and
// returns them.
func waitStats(t *testing.T, app *apptest.App, restaurant string, want stats) stats {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := restaurantStats(t, app, restaurant)
		if got.Placed >= want.Placed && got.Accepted >= want.Accepted {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("restaurant %s: analytics did not count the orders: stats %+v; want at least %+v", restaurant, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restaurantStats reads the restaurant's totals over its stats' default
// range of days.
func restaurantStats(t *testing.T, app *apptest.App, restaurant string) stats {
	t.Helper()
	resp := app.Do(t, http.MethodGet, "/v1/restaurants/"+restaurant+"/stats", nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("GET stats = %d %s", resp.Status, resp.Body)
	}
	var body struct {
		Totals stats `json:"totals"`
	}
	resp.JSON(t, &body)
	return body.Totals
}

// waitVouchers waits until the customer holds a voucher for orderID, and
// returns the customer's voucher count per order.
func waitVouchers(t *testing.T, app *apptest.App, customerID, orderID string) map[string]int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp := app.Do(t, http.MethodGet, "/v1/customers/"+customerID+"/vouchers", nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("GET vouchers = %d %s", resp.Status, resp.Body)
		}
		var vouchers []struct {
			OrderID string `json:"order_id"`
		}
		resp.JSON(t, &vouchers)
		count := map[string]int{}
		for _, v := range vouchers {
			count[v.OrderID]++
		}
		if count[orderID] > 0 || time.Now().After(deadline) {
			return count
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// publishDelivered is the delivery context's courier app reporting that
// the order was handed over. msgIDSuffix, when set, gives the message a
// Nats-Msg-Id of its own (the CloudEvent keeps its ID), so the stream does
// not drop it as a duplicate.
func publishDelivered(js jetstream.JetStream, orderID, msgIDSuffix string) error {
	now := time.Now().UTC()
	data, err := json.Marshal(events.DeliveryCompletedEvent{OrderID: orderID, CourierID: "courier-e2e", DeliveredAt: now})
	if err != nil {
		return err
	}
	env := events.Envelope{
		ID:      events.DeliveryEventID(orderID, events.DeliveryCompleted).String(),
		Type:    events.CEType(events.DeliveryCompleted),
		Source:  events.SourceDelivery,
		Subject: orderID,
		Time:    now,
		Data:    data,
	}
	msg := env.Msg()
	if msgIDSuffix != "" {
		msg.Header.Set(events.HeaderMsgID, env.ID+msgIDSuffix)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish delivery.completed: %w", err)
	}
	return nil
}

// TestConcurrentOrdersReachEveryConsumerInOrder places 200 orders at once
// and drives each to completion, the delivery through the bus. Then every
// consumer must have taken every event exactly once and, for the ordered
// ones, in ce-sequence order: a consumer of the test's own (built with the
// consumer kit, as another context would) records the order it applied
// each order's events in, and the contexts' inboxes are checked.
func TestConcurrentOrdersReachEveryConsumerInOrder(t *testing.T) {
	const orders = 200
	app := apptest.Start(t)
	js := jetStream(t, app)

	// A downstream context of the test's own, starting from now.
	var (
		mu      sync.Mutex
		applied = map[string][]int64{}
	)
	probe, err := consumer.New(consumer.Config{
		Name: "e2e-order-probe-" + keyRun, Stream: events.OrderStream, Ordered: true,
		DB: app.Env.Store.DB, JetStream: js, Validate: consumer.ValidateSchema,
		Handler: func(_ context.Context, _ *sql.Tx, env events.Envelope) error {
			mu.Lock()
			defer mu.Unlock()
			applied[env.Subject] = append(applied[env.Subject], env.Sequence)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	probeDone := make(chan error, 1)
	go func() { probeDone <- probe.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-probeDone
	})

	ids := make([]string, orders)
	var retried atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, orders)
	for i := range orders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := func() error {
				// On a loaded machine (two test binaries, each with its own
				// stack, share two cores; more so under the race detector)
				// the Temporal server may not answer the API in time: a 503,
				// retried with the same key after its Retry-After, as the
				// API asks. The retry must find the order the first request
				// may have started, never make a second one. How long a
				// start takes is the bench's to measure, not this test's.
				key := newKey(fmt.Sprintf("c200-%d", i))
				var resp apptest.Response
				var err error
				attempt := 1
				for ; ; attempt++ {
					resp, err = app.Request(http.MethodPost, "/v1/orders", orderRequest(pizzeria, margherita, 1+i%3, "tok_visa"),
						"Idempotency-Key: "+key)
					if err != nil {
						return err
					}
					if resp.Status != http.StatusServiceUnavailable || attempt == 5 {
						break
					}
					retried.Add(1)
					wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
					if err != nil {
						return fmt.Errorf("order %d: 503 without a Retry-After in seconds: %v", i, err)
					}
					time.Sleep(time.Duration(wait) * time.Second)
				}
				// A retry is answered 200 with the order the first started,
				// or 201 when the first had started none.
				if resp.Status != http.StatusCreated && (attempt == 1 || resp.Status != http.StatusOK) {
					return fmt.Errorf("order %d: POST = %d %s", i, resp.Status, resp.Body)
				}
				var p placed
				if err := json.Unmarshal(resp.Body, &p); err != nil {
					return fmt.Errorf("order %d: %w", i, err)
				}
				ids[i] = p.ID
				for {
					// A restaurant accepts once it has been notified; an
					// accept that comes earlier is refused and retried.
					if resp, err = app.Request(http.MethodPost, "/v1/orders/"+p.ID+"/accept", nil); err != nil {
						return err
					}
					if resp.Status == http.StatusConflict && strings.Contains(string(resp.Body), `"code":"not_yet"`) {
						time.Sleep(20 * time.Millisecond)
						continue
					}
					break
				}
				if resp.Status != http.StatusOK {
					return fmt.Errorf("order %d: accept = %d %s", i, resp.Status, resp.Body)
				}
				return publishDelivered(js, p.ID, "")
			}(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if n := retried.Load(); n > 0 {
		t.Logf("%d order requests were answered 503 and retried with their key", n)
	}
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Every order completes through the inbound consumer.
	for _, id := range ids {
		waitStatus(t, app, id, "completed")
	}
	const eventsPerOrder = 7 // placed, authorized, notified, accepted, captured, user_notified, completed
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		done := 0
		for _, id := range ids {
			if len(applied[id]) >= eventsPerOrder {
				done++
			}
		}
		mu.Unlock()
		if done == orders {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the probe consumer applied every event of only %d of %d orders within 60s", done, orders)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	for _, id := range ids {
		if want := []int64{1, 2, 3, 4, 5, 6, 7}; !slices.Equal(applied[id], want) {
			t.Errorf("order %s: probe applied sequences %v; want %v, each once, in order", id, applied[id], want)
		}
	}
	mu.Unlock()

	// The contexts' own consumers, which run on their own: once they have
	// caught up, each order's events in their inbox exactly once (the
	// primary key), every one applied (not stale, not skipped), ending
	// with the order's last event. Analytics takes all seven, promotions
	// only order.completed.
	checkInboxes(t, app, ids, map[string]int{"analytics": eventsPerOrder, "promotions": 1}, eventsPerOrder)

	// Promotions: exactly one voucher per order.
	var vouchers, distinct int
	if err := app.Env.Store.DB.QueryRow(
		`SELECT count(*), count(DISTINCT order_id) FROM promotions.vouchers WHERE order_id = ANY($1::uuid[])`,
		pgArray(ids)).Scan(&vouchers, &distinct); err != nil {
		t.Fatalf("count vouchers: %v", err)
	}
	if vouchers != orders || distinct != orders {
		t.Errorf("%d vouchers for %d distinct orders; want exactly one for each of %d", vouchers, distinct, orders)
	}
}

// inboxRow is one consumer's inbox for one order.
type inboxRow struct {
	total, applied, last int
}

// checkInboxes waits (up to a minute) until each consumer in want has
// inbox rows for all of ids' orders, want[consumer] of them for each,
// then checks that every one was applied and that the last is the
// order's lastSequence.
func checkInboxes(t *testing.T, app *apptest.App, ids []string, want map[string]int, lastSequence int) {
	t.Helper()
	read := func() map[string]map[string]inboxRow {
		rows, err := app.Env.Store.DB.Query(`
			SELECT consumer, subject, count(*), count(*) FILTER (WHERE outcome = 'applied'), max(sequence)
			FROM inbox WHERE stream = $1 AND subject = ANY($2::text[])
			GROUP BY consumer, subject`, events.OrderStream, pgArray(ids))
		if err != nil {
			t.Fatalf("read inboxes: %v", err)
		}
		defer rows.Close()
		got := map[string]map[string]inboxRow{}
		for rows.Next() {
			var name, subject string
			var r inboxRow
			if err := rows.Scan(&name, &subject, &r.total, &r.applied, &r.last); err != nil {
				t.Fatal(err)
			}
			if got[name] == nil {
				got[name] = map[string]inboxRow{}
			}
			got[name][subject] = r
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return got
	}
	caughtUp := func(got map[string]map[string]inboxRow) bool {
		for name, n := range want {
			for _, id := range ids {
				if got[name][id].total < n {
					return false
				}
			}
		}
		return true
	}
	deadline := time.Now().Add(time.Minute)
	got := read()
	for !caughtUp(got) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		got = read()
	}
	for name, n := range want {
		for _, id := range ids {
			r, ok := got[name][id]
			switch {
			case !ok:
				t.Errorf("consumer %s, order %s: no inbox rows after a minute", name, id)
			case r.total != n:
				t.Errorf("consumer %s, order %s: %d inbox rows; want %d", name, id, r.total, n)
			case r.applied != r.total:
				t.Errorf("consumer %s, order %s: %d of %d events applied; the rest stale or skipped", name, id, r.applied, r.total)
			case r.last != lastSequence:
				t.Errorf("consumer %s, order %s: last sequence %d; want %d", name, id, r.last, lastSequence)
			}
		}
	}
}

// pgArray renders ids as a PostgreSQL array literal.
func pgArray(ids []string) string {
	b, _ := json.Marshal(ids)
	s := string(b)
	return "{" + s[1:len(s)-1] + "}"
}

// TestDeliveredAfterTheDeliveryContext: an order the delivery context
// completed (delivery.completed through the inbound consumer, whose Update
// has an ID of its own) answers the courier app's own POST /delivered 200
// completed, as the reverse order is fine for inbound and as an accept
// retried after the delivery answers accepted: the same fact reported
// twice gets one outcome. It was a 409 "order is completed".
func TestDeliveredAfterTheDeliveryContext(t *testing.T) {
	app := apptest.Start(t)
	js := jetStream(t, app)
	p := place(t, app, orderRequest(pizzeria, diavola, 1, "tok_visa"))
	waitStatus(t, app, p.ID, "awaiting_acceptance")
	mustDecide(t, app, p.ID, "accept", nil, "accepted")
	if err := publishDelivered(js, p.ID, ""); err != nil {
		t.Fatal(err)
	}
	if o := finish(t, app, p.ID, ""); o.Status != "completed" {
		t.Fatalf("order is %q after delivery.completed; want completed", o.Status)
	}
	code, got := decide(t, app, p.ID, "delivered", nil)
	if code != http.StatusOK || got != "completed" {
		t.Fatalf("POST /delivered after the courier's delivery = %d %q; want 200 \"completed\"", code, got)
	}
	// For comparison: the accept retried now is 200 accepted.
	mustDecide(t, app, p.ID, "accept", nil, "accepted")
}
