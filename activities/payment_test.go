package activities_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/events"
)

var authIDPattern = regexp.MustCompile(`^auth_[0-9a-f]{24}$`)

func TestAuthorizePayment(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name        string
		token       string
		wantDecline string // "" when the card approves
	}{
		{"visa approves", activities.SandboxTokenVisa, ""},
		{"declined card", activities.SandboxTokenDeclined, "card declined"},
		{"insufficient funds", activities.SandboxTokenInsufficientFunds, "insufficient funds"},
		{"unknown token", "tok_mastercard", "unknown test token tok_mastercard"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := f.place(t)
			authorize := func() (activities.Authorization, error) {
				return f.acts.AuthorizePayment(t.Context(), activities.AuthorizeInput{
					OrderID: in.OrderID, PaymentToken: tt.token, AmountCents: in.TotalCents,
				})
			}
			auth, err := authorize()
			if tt.wantDecline != "" {
				appErr := requireAppError(t, err, activities.ErrTypePaymentDeclined)
				if appErr.Message() != tt.wantDecline {
					t.Errorf("decline message %q, want %q", appErr.Message(), tt.wantDecline)
				}
				if p := f.payment(t, in.OrderID); p.Status != string(orderflow.PaymentDeclined) ||
					p.DeclineReason != tt.wantDecline || p.AuthorizationID != "" || p.AmountCents != in.TotalCents {
					t.Errorf("payment row %+v, want declined: %s", p, tt.wantDecline)
				}
				// No event: the workflow records the rejection itself.
				s := f.snapshot(t, in.OrderID)
				if s.Version != 1 || s.Outbox != 1 || s.Ledger != 0 {
					t.Errorf("after a decline: %+v, want version 1, only order.placed, no ledger entry", s)
				}
				// A declined key stays declined.
				_, err := authorize()
				if appErr := requireAppError(t, err, activities.ErrTypePaymentDeclined); appErr.Message() != tt.wantDecline {
					t.Errorf("second decline message %q", appErr.Message())
				}
				if again := f.snapshot(t, in.OrderID); again != s {
					t.Errorf("retried decline changed %+v to %+v", s, again)
				}
				return
			}

			if err != nil {
				t.Fatalf("AuthorizePayment: %v", err)
			}
			if !authIDPattern.MatchString(auth.AuthorizationID) {
				t.Errorf("authorization id %q, want auth_ and 24 hex digits", auth.AuthorizationID)
			}
			if p := f.payment(t, in.OrderID); p.Status != "authorized" || p.AuthorizationID != auth.AuthorizationID || p.AmountCents != 3250 {
				t.Errorf("payment row %+v", p)
			}
			ob := f.outbox(t, in.OrderID)
			ev := decode(t, ob[len(ob)-1])
			if ev.PaymentStatus != "authorized" || ev.AuthorizationID != auth.AuthorizationID || ev.AmountCents != 3250 || ev.Status != "placed" {
				t.Errorf("payment_authorized payload %+v", ev)
			}
			s := f.snapshot(t, in.OrderID)
			again, err := authorize()
			if err != nil || again != auth {
				t.Errorf("retry: %+v, %v; want %+v", again, err, auth)
			}
			if after := f.snapshot(t, in.OrderID); after != s {
				t.Errorf("retry changed %+v to %+v", s, after)
			}
			if got := f.ledger(t, in.OrderID); !slices.Equal(got, []string{"authorize"}) {
				t.Errorf("ledger %v, want one authorize", got)
			}
		})
	}
}

// TestAuthorizePaymentTransient: tok_transient fails the first two calls
// with an error Temporal retries, then approves, and the key keeps its hold.
func TestAuthorizePaymentTransient(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	in := f.place(t)
	authorize := func() (activities.Authorization, error) {
		return f.acts.AuthorizePayment(t.Context(), activities.AuthorizeInput{
			OrderID: in.OrderID, PaymentToken: activities.SandboxTokenTransient, AmountCents: in.TotalCents,
		})
	}
	for attempt := 1; attempt <= 2; attempt++ {
		_, err := authorize()
		requireRetryable(t, err)
		if s := f.snapshot(t, in.OrderID); s.Version != 1 || s.Payment != "" || s.Ledger != 0 {
			t.Fatalf("after failed attempt %d: %+v, want nothing written", attempt, s)
		}
	}
	first, err := authorize()
	if err != nil {
		t.Fatalf("third attempt: %v", err)
	}
	second, err := authorize()
	if err != nil || second != first {
		t.Fatalf("fourth attempt: %+v, %v; want %+v", second, err, first)
	}
	if s := f.snapshot(t, in.OrderID); s.Version != 2 || s.Payment != "authorized" || s.Ledger != 1 {
		t.Errorf("after approval: %+v, want version 2, authorized, one ledger entry", s)
	}
}

func TestSandboxHoldsOncePerKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name string
		run  func(t *testing.T, key string)
	}{
		{"repeated calls return the same hold", func(t *testing.T, key string) {
			var ids []string
			for range 3 {
				id, err := f.gw.Authorize(t.Context(), key, activities.SandboxTokenVisa, 500)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			if ids[0] != ids[1] || ids[1] != ids[2] {
				t.Errorf("ids %v, want one", ids)
			}
		}},
		{"concurrent calls return the same hold", func(t *testing.T, key string) {
			ids, errs := make([]string, 8), make([]error, 8)
			var wg sync.WaitGroup
			for i := range ids {
				wg.Go(func() { ids[i], errs[i] = f.gw.Authorize(t.Context(), key, activities.SandboxTokenVisa, 500) })
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if ids[0] == "" || slices.ContainsFunc(ids, func(id string) bool { return id != ids[0] }) {
				t.Errorf("ids %v, want one", ids)
			}
		}},
		{"a call racing the first waits for its hold", func(t *testing.T, key string) {
			// An uncommitted first hold: the racing call does not see it,
			// tries to insert its own, and must wait for this commit.
			tx, err := f.store.DB.BeginTx(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			first := "auth_" + strings.Repeat("0f", 12)
			q := f.store.Queries.WithTx(tx)
			if _, err := q.PlaceSandboxHold(t.Context(), db.PlaceSandboxHoldParams{
				ID: first, IdempotencyKey: key, Token: activities.SandboxTokenVisa, AmountCents: 500, Status: "authorized", Entry: "authorize",
			}); err != nil {
				t.Fatal(err)
			}
			type result struct {
				id  string
				err error
			}
			done := make(chan result, 1)
			go func() {
				id, err := f.gw.Authorize(t.Context(), key, activities.SandboxTokenVisa, 500)
				done <- result{id, err}
			}()
			waitForLockWait(t, f.store.DB)
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if r := <-done; r.err != nil || r.id != first {
				t.Errorf("racing Authorize: %q, %v; want the first hold %q", r.id, r.err, first)
			}
		}},
		{"a cancelled key declines", func(t *testing.T, key string) {
			for range 2 { // a retried cancel
				if _, err := f.gw.CancelKey(t.Context(), key); !errors.Is(err, activities.ErrNoHold) {
					t.Fatalf("CancelKey of an unused key: %v; want ErrNoHold", err)
				}
			}
			_, err := f.gw.Authorize(t.Context(), key, activities.SandboxTokenVisa, 500)
			var declined *activities.DeclinedError
			if !errors.As(err, &declined) {
				t.Fatalf("Authorize after CancelKey: %v; want a decline", err)
			}
			if got := f.ledger(t, key); len(got) != 0 {
				t.Errorf("ledger %v; want no movement", got)
			}
		}},
		{"cancelling a key that holds returns the hold", func(t *testing.T, key string) {
			id, err := f.gw.Authorize(t.Context(), key, activities.SandboxTokenVisa, 500)
			if err != nil {
				t.Fatal(err)
			}
			hold, err := f.gw.CancelKey(t.Context(), key)
			if err != nil || hold.AuthorizationID != id || hold.Status != "authorized" || hold.AmountCents != 500 {
				t.Errorf("CancelKey = %+v, %v; want the authorized hold %s of 500", hold, err, id)
			}
		}},
		{"authorize racing cancel: the hold is found or never placed", func(t *testing.T, key string) {
			// Per key, either CancelKey sees the hold (and a release voids
			// it) or the hold is declined: never a hold CancelKey missed.
			for i := range 20 {
				k := fmt.Sprintf("%s/%d", key, i)
				var (
					wg      sync.WaitGroup
					authID  string
					authErr error
					hold    activities.Hold
					holdErr error
				)
				wg.Go(func() { authID, authErr = f.gw.Authorize(t.Context(), k, activities.SandboxTokenVisa, 500) })
				wg.Go(func() { hold, holdErr = f.gw.CancelKey(t.Context(), k) })
				wg.Wait()
				var declined *activities.DeclinedError
				switch {
				case authErr == nil && holdErr == nil && hold.AuthorizationID == authID:
				case errors.As(authErr, &declined) && errors.Is(holdErr, activities.ErrNoHold):
				default:
					t.Fatalf("key %s: Authorize = %q, %v; CancelKey = %+v, %v", k, authID, authErr, hold, holdErr)
				}
			}
		}},
		{"a declined key stays declined", func(t *testing.T, key string) {
			for _, tok := range []string{activities.SandboxTokenDeclined, activities.SandboxTokenVisa} {
				_, err := f.gw.Authorize(t.Context(), key, tok, 500)
				var declined *activities.DeclinedError
				if !errors.As(err, &declined) || declined.Reason != "card declined" {
					t.Errorf("Authorize(%s): %v, want decline: card declined", tok, err)
				}
			}
		}},
		{"a key reused for another amount is refused", func(t *testing.T, key string) {
			if _, err := f.gw.Authorize(t.Context(), key, activities.SandboxTokenVisa, 500); err != nil {
				t.Fatal(err)
			}
			_, err := f.gw.Authorize(t.Context(), key, activities.SandboxTokenVisa, 501)
			requireAppError(t, err, activities.ErrTypeInvalid)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := uuid.NewString()
			tt.run(t, key)
			if got := f.ledger(t, key); len(got) > 1 || (len(got) == 1 && got[0] != "authorize") {
				t.Errorf("ledger %v, want at most one authorize", got)
			}
		})
	}
}

// TestSandboxMoves: capture and void only from authorized, refund only from
// captured; a repeat is a no-op, an impossible move a non-retryable error.
func TestSandboxMoves(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name        string
		ops         []string
		wantErrAt   int // index of the op that fails; -1 for none
		wantStatus  string
		wantEntries []string
	}{
		{"capture twice", []string{"capture", "capture"}, -1, "captured", []string{"authorize", "capture"}},
		{"void twice", []string{"void", "void"}, -1, "voided", []string{"authorize", "void"}},
		{"refund twice", []string{"capture", "refund", "refund"}, -1, "refunded", []string{"authorize", "capture", "refund"}},
		{"capture after void", []string{"void", "capture"}, 1, "voided", []string{"authorize", "void"}},
		{"void after capture", []string{"capture", "void"}, 1, "captured", []string{"authorize", "capture"}},
		{"refund before capture", []string{"refund"}, 0, "authorized", []string{"authorize"}},
		{"refund after void", []string{"void", "refund"}, 1, "voided", []string{"authorize", "void"}},
		{"capture after refund", []string{"capture", "refund", "capture"}, 2, "refunded", []string{"authorize", "capture", "refund"}},
	}
	moves := map[string]func(context.Context, string) error{
		"capture": f.gw.Capture, "void": f.gw.Void, "refund": f.gw.Refund,
	}
	opNames := []string{"capture", "void", "refund"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := uuid.NewString()
			id, err := f.gw.Authorize(t.Context(), key, activities.SandboxTokenVisa, 700)
			if err != nil {
				t.Fatal(err)
			}
			for i, op := range tt.ops {
				err := moves[op](t.Context(), id)
				if i != tt.wantErrAt {
					if err != nil {
						t.Fatalf("op %d (%s): %v", i, op, err)
					}
					continue
				}
				appErr := requireAppError(t, err, activities.ErrTypeInvalid)
				if !strings.Contains(appErr.Message(), "cannot "+op) {
					t.Errorf("op %d (%s): message %q does not say what cannot be done", i, op, appErr.Message())
				}
			}
			auth, err := f.store.GetSandboxAuthorizationByKey(t.Context(), key)
			if err != nil || auth.Status != tt.wantStatus {
				t.Errorf("status %q (%v), want %q", auth.Status, err, tt.wantStatus)
			}
			if got := f.ledger(t, key); !slices.Equal(got, tt.wantEntries) {
				t.Errorf("ledger %v, want %v", got, tt.wantEntries)
			}
		})
	}
	t.Run("unknown authorization", func(t *testing.T) {
		for _, op := range opNames {
			requireAppError(t, moves[op](t.Context(), "auth_000000000000000000000000"), activities.ErrTypeInvalid)
		}
	})
}

// TestPaymentOutcomesInTheLedger runs each way an order's money can end
// through the activities, every step twice, and audits the sandbox's books.
func TestPaymentOutcomesInTheLedger(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	type move = func(*activities.Activities, context.Context, activities.PaymentInput) error
	void, capture, refund := (*activities.Activities).VoidPayment, (*activities.Activities).CapturePayment, (*activities.Activities).RefundPayment
	tests := []struct {
		name        string
		steps       []move
		wantEvents  []string
		wantStatus  orderflow.PaymentStatus
		wantCharged int64
	}{
		{"voided", []move{void},
			[]string{events.OrderPaymentVoided}, orderflow.PaymentVoided, 0},
		{"captured", []move{capture},
			[]string{events.OrderPaymentCaptured}, orderflow.PaymentCaptured, 3250},
		{"refunded", []move{capture, refund},
			[]string{events.OrderPaymentCaptured, events.OrderPaymentRefunded}, orderflow.PaymentRefunded, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := f.place(t)
			authID := f.authorize(t, in, activities.SandboxTokenVisa)
			pin := activities.PaymentInput{OrderID: in.OrderID, AuthorizationID: authID}
			for _, st := range tt.steps {
				for range 2 {
					if err := st(f.acts, t.Context(), pin); err != nil {
						t.Fatal(err)
					}
				}
			}
			charged, err := f.store.SandboxNetCharged(t.Context(), in.OrderID)
			if err != nil || charged != tt.wantCharged {
				t.Errorf("net charged %d (%v), want %d", charged, err, tt.wantCharged)
			}
			if p := f.payment(t, in.OrderID); p.Status != string(tt.wantStatus) || p.AuthorizationID != authID || p.AmountCents != 3250 {
				t.Errorf("payment row %+v, want %s", p, tt.wantStatus)
			}
			ob := f.outbox(t, in.OrderID)
			if len(ob) != 2+len(tt.wantEvents) {
				t.Fatalf("%d events, want placed, payment_authorized and %v", len(ob), tt.wantEvents)
			}
			for i, want := range tt.wantEvents {
				row := ob[2+i]
				ev := decode(t, row)
				if row.EventType != want || row.AggregateVersion != int64(3+i) || ev.AuthorizationID != authID || ev.AmountCents != 3250 {
					t.Errorf("event %d: %s v%d %+v, want %s v%d", i, row.EventType, row.AggregateVersion, ev, want, 3+i)
				}
			}
			if last := decode(t, ob[len(ob)-1]); last.PaymentStatus != string(tt.wantStatus) {
				t.Errorf("last payment event status %q, want %q", last.PaymentStatus, tt.wantStatus)
			}
		})
	}
}

func TestPaymentMovesRefuseAnotherOrdersHold(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	paid, unpaid := f.place(t), f.place(t)
	authID := f.authorize(t, paid, activities.SandboxTokenVisa)
	tests := []struct {
		name string
		in   activities.PaymentInput
	}{
		{"order without payment", activities.PaymentInput{OrderID: unpaid.OrderID, AuthorizationID: authID}},
		{"wrong authorization", activities.PaymentInput{OrderID: paid.OrderID, AuthorizationID: "auth_000000000000000000000000"}},
		{"no authorization", activities.PaymentInput{OrderID: paid.OrderID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireAppError(t, f.acts.CapturePayment(t.Context(), tt.in), activities.ErrTypeInvalid)
		})
	}
	if got := f.ledger(t, paid.OrderID); !slices.Equal(got, []string{"authorize"}) {
		t.Errorf("ledger %v, want the hold untouched", got)
	}
}

// waitForLockWait returns once a session of this test's database waits for
// a lock, so a test can release it knowing the waiter got there first.
func waitForLockWait(tb testing.TB, pool *sql.DB) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		// A test probe of the server's state, not an application query.
		if err := pool.QueryRowContext(tb.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			tb.Fatalf("probe lock waits: %v", err)
		}
		if waiting > 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatal("no session waited for the lock within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReleasePaymentAsksTheGateway: the compensation gives back whatever
// the gateway holds for the order, also what the order's own records never
// heard of, and does it once however often it is retried.
func TestReleasePaymentAsksTheGateway(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	release := func(t *testing.T, orderID string) string {
		t.Helper()
		var last string
		for range 2 { // a retried compensation
			got, err := f.acts.ReleasePayment(t.Context(), activities.PaymentInput{OrderID: orderID})
			if err != nil {
				t.Fatalf("ReleasePayment: %v", err)
			}
			last = got
		}
		return last
	}
	t.Run("authorized hold is voided", func(t *testing.T) {
		in := f.place(t)
		f.authorize(t, in, activities.SandboxTokenVisa)
		if got := release(t, in.OrderID); got != "voided" {
			t.Errorf("released = %q; want voided", got)
		}
		if got := f.ledger(t, in.OrderID); !slices.Equal(got, []string{"authorize", "void"}) {
			t.Errorf("ledger %v; want authorize, void", got)
		}
		if p := f.payment(t, in.OrderID); p.Status != "voided" {
			t.Errorf("payment row %q; want voided", p.Status)
		}
	})
	t.Run("captured payment is refunded", func(t *testing.T) {
		in := f.place(t)
		authID := f.authorize(t, in, activities.SandboxTokenVisa)
		if err := f.acts.CapturePayment(t.Context(), activities.PaymentInput{OrderID: in.OrderID, AuthorizationID: authID}); err != nil {
			t.Fatal(err)
		}
		if got := release(t, in.OrderID); got != "refunded" {
			t.Errorf("released = %q; want refunded", got)
		}
		if charged, _ := f.store.SandboxNetCharged(t.Context(), in.OrderID); charged != 0 {
			t.Errorf("net charged %d after the refund; want 0", charged)
		}
		var refunds int
		for _, row := range f.outbox(t, in.OrderID) {
			if row.EventType == events.OrderPaymentRefunded {
				refunds++
			}
		}
		if refunds != 1 {
			t.Errorf("%d payment_refunded events; want 1", refunds)
		}
	})
	t.Run("hold the order never recorded is voided", func(t *testing.T) {
		// The gateway placed the hold but the activity failed before its
		// transaction committed: the order has no payment row.
		in := f.place(t)
		if _, err := f.gw.Authorize(t.Context(), in.OrderID, activities.SandboxTokenVisa, in.TotalCents); err != nil {
			t.Fatal(err)
		}
		if p := f.payment(t, in.OrderID); p.Status != "" {
			t.Fatalf("payment row %+v before the release; want none", p)
		}
		if got := release(t, in.OrderID); got != "voided" {
			t.Errorf("released = %q; want voided", got)
		}
		if got := f.ledger(t, in.OrderID); !slices.Equal(got, []string{"authorize", "void"}) {
			t.Errorf("ledger %v; want authorize, void", got)
		}
	})
	t.Run("nothing held", func(t *testing.T) {
		in := f.place(t)
		if got := release(t, in.OrderID); got != "" {
			t.Errorf("released = %q; want empty: nothing to release", got)
		}
	})
	t.Run("authorization arriving after the release places no hold", func(t *testing.T) {
		// The workflow was cancelled while AuthorizePayment ran: the SDK
		// stops waiting for a local activity at once, the compensation
		// finds nothing to release, and the abandoned attempt reaches the
		// gateway afterwards.
		in := f.place(t)
		if got := release(t, in.OrderID); got != "" {
			t.Fatalf("released = %q; want empty: nothing held yet", got)
		}
		_, err := f.acts.AuthorizePayment(t.Context(), activities.AuthorizeInput{OrderID: in.OrderID, PaymentToken: activities.SandboxTokenVisa, AmountCents: in.TotalCents})
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Type() != activities.ErrTypePaymentDeclined {
			t.Fatalf("AuthorizePayment after the release: %v; want a %s error", err, activities.ErrTypePaymentDeclined)
		}
		if got := f.ledger(t, in.OrderID); len(got) != 0 {
			t.Errorf("ledger %v; want no movement", got)
		}
		if p := f.payment(t, in.OrderID); p.Status != "" {
			t.Errorf("payment row %+v after the late attempt; want none, as the release left it", p)
		}
		if got := release(t, in.OrderID); got != "" {
			t.Errorf("released again = %q; want empty", got)
		}
		for _, row := range f.outbox(t, in.OrderID) {
			if row.EventType == events.OrderPaymentAuthorized {
				t.Errorf("outbox has %s after the release", row.EventType)
			}
		}
	})
	t.Run("authorization recorded after the release is refused", func(t *testing.T) {
		// The abandoned attempt read the order before the cancellation and
		// placed its hold, the compensation then ended the order and
		// voided the hold, and only then does the attempt record the
		// authorization: the gateway here runs the compensation between
		// placing the hold and answering.
		in := f.place(t)
		late := *f.acts
		late.Payments = &compensateWhileAuthorizing{PaymentGateway: f.gw, compensate: func(ctx context.Context) {
			if err := f.acts.Transition(ctx, activities.TransitionInput{
				OrderID: in.OrderID, Status: "cancelled", EventType: events.OrderCancelled, Reason: "order workflow cancelled",
			}); err != nil {
				t.Fatal(err)
			}
			if got := release(t, in.OrderID); got != "voided" {
				t.Fatalf("released = %q; want voided", got)
			}
		}}
		_, err := late.AuthorizePayment(t.Context(), activities.AuthorizeInput{OrderID: in.OrderID, PaymentToken: activities.SandboxTokenVisa, AmountCents: in.TotalCents})
		requireEnded(t, err, "cancelled")
		if p := f.payment(t, in.OrderID); p.Status != "voided" {
			t.Errorf("payment row %q after the late attempt; want voided", p.Status)
		}
		if o := f.order(t, in.OrderID); o.Status != "cancelled" {
			t.Errorf("order %q; want cancelled", o.Status)
		}
		for _, row := range f.outbox(t, in.OrderID) {
			if row.EventType == events.OrderPaymentAuthorized {
				t.Errorf("outbox has %s after the release", row.EventType)
			}
		}
	})
	t.Run("capture landing before the void is refunded", func(t *testing.T) {
		// A capture the workflow stopped waiting for reaches the gateway
		// between the release's look-up and its void.
		in := f.place(t)
		authID := f.authorize(t, in, activities.SandboxTokenVisa)
		late := *f.acts
		late.Payments = &captureBeforeVoid{PaymentGateway: f.gw}
		got, err := late.ReleasePayment(t.Context(), activities.PaymentInput{OrderID: in.OrderID, AuthorizationID: authID})
		if err != nil || got != "refunded" {
			t.Fatalf("ReleasePayment = %q, %v; want refunded", got, err)
		}
		if got := f.ledger(t, in.OrderID); !slices.Equal(got, []string{"authorize", "capture", "refund"}) {
			t.Errorf("ledger %v; want authorize, capture, refund", got)
		}
		if charged, _ := f.store.SandboxNetCharged(t.Context(), in.OrderID); charged != 0 {
			t.Errorf("net charged %d; want 0", charged)
		}
	})
	t.Run("declined stays declined", func(t *testing.T) {
		in := f.place(t)
		if _, err := f.acts.AuthorizePayment(t.Context(), activities.AuthorizeInput{OrderID: in.OrderID, PaymentToken: activities.SandboxTokenDeclined, AmountCents: in.TotalCents}); err == nil {
			t.Fatal("tok_declined was approved")
		}
		if got := release(t, in.OrderID); got != "declined" {
			t.Errorf("released = %q; want declined", got)
		}
	})
}

// compensateWhileAuthorizing places the hold, then runs compensate before
// it answers: the window in which a workflow cancellation overtakes an
// authorization.
type compensateWhileAuthorizing struct {
	activities.PaymentGateway
	compensate func(context.Context)
}

func (g *compensateWhileAuthorizing) Authorize(ctx context.Context, key, token string, amountCents int64) (string, error) {
	id, err := g.PaymentGateway.Authorize(ctx, key, token, amountCents)
	if err == nil {
		g.compensate(ctx)
	}
	return id, err
}

// captureBeforeVoid captures the hold just before its first void: an
// abandoned capture overtaking the release.
type captureBeforeVoid struct {
	activities.PaymentGateway
	done bool
}

func (g *captureBeforeVoid) Void(ctx context.Context, authorizationID string) error {
	if !g.done {
		g.done = true
		if err := g.Capture(ctx, authorizationID); err != nil {
			return err
		}
	}
	return g.PaymentGateway.Void(ctx, authorizationID)
}
