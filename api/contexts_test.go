package api_test

import (
	"context"
	"database/sql"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/analytics"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/promotions"
)

// TestCustomerVouchers: the promotions context's vouchers of a customer,
// newest first.
func TestCustomerVouchers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var orders []uuid.UUID
	for i := range 2 {
		id := uuid.New()
		orders = append(orders, id)
		issued := testNow.Add(time.Duration(i) * time.Hour).Truncate(time.Microsecond)
		if _, err := f.store.InsertVoucher(ctx, db.InsertVoucherParams{
			Code: promotions.VoucherCode(id), CustomerID: customerID, OrderID: id, AmountCents: 500,
			IssuedAt: issued, ExpiresAt: issued.Add(promotions.VoucherValidity), EventID: uuid.NewString(),
		}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		path   string
		status int
		field  string
		want   []uuid.UUID
	}{
		{name: "all, newest first", path: "/v1/customers/" + customerID + "/vouchers", status: 200, want: []uuid.UUID{orders[1], orders[0]}},
		{name: "limited", path: "/v1/customers/" + customerID + "/vouchers?limit=1", status: 200, want: []uuid.UUID{orders[1]}},
		{name: "a customer without vouchers", path: "/v1/customers/c_nobody/vouchers", status: 200, want: []uuid.UUID{}},
		{name: "limit zero", path: "/v1/customers/" + customerID + "/vouchers?limit=0", status: 400, field: "limit"},
		{name: "limit twice", path: "/v1/customers/" + customerID + "/vouchers?limit=1&limit=abc", status: 400, field: "limit"},
		{name: "limit not a number", path: "/v1/customers/" + customerID + "/vouchers?limit=x", status: 400, field: "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.do(t, http.MethodGet, tt.path, "", nil)
			if tt.status != 200 {
				wantProblem(t, rec, tt.status, tt.field)
				return
			}
			var got []promotions.Voucher
			decode(t, rec, 200, &got)
			if len(got) != len(tt.want) {
				t.Fatalf("%d vouchers, want %d: %s", len(got), len(tt.want), rec.Body)
			}
			for i, v := range got {
				if v.OrderID != tt.want[i].String() || v.Code != promotions.VoucherCode(tt.want[i]) || v.AmountCents != 500 || v.CustomerID != customerID {
					t.Errorf("voucher %d = %+v, want the one of order %s", i, v, tt.want[i])
				}
			}
		})
	}
}

// TestRestaurantStats: the analytics context's projection, over the days
// asked for or the last week.
func TestRestaurantStats(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	day := time.Date(2026, 3, 13, 0, 0, 0, 0, time.UTC)
	for _, c := range []string{"placed", "placed", "accepted", "rejected"} {
		if err := f.store.CountRestaurantDay(ctx, db.CountRestaurantDayParams{RestaurantID: pizzaID, Day: day, Counter: c}); err != nil {
			t.Fatal(err)
		}
	}
	id := uuid.New()
	placed := day.Add(12 * time.Hour)
	if _, err := f.store.InsertAnalyticsOrder(ctx, db.InsertAnalyticsOrderParams{
		OrderID: id, RestaurantID: pizzaID, Day: day, PlacedAt: sql.NullTime{Time: placed, Valid: true},
	}); err != nil {
		t.Fatal(err)
	}
	if err := f.store.SetAnalyticsOrderAccepted(ctx, db.SetAnalyticsOrderAcceptedParams{
		OrderID: id, AcceptedAt: sql.NullTime{Time: placed.Add(42 * time.Second), Valid: true}, AcceptMs: sql.NullInt64{Int64: 42000, Valid: true},
	}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		query    string
		status   int
		field    string
		from, to string
		days     int
		empty    bool   // a range without the day counted above
		detail   string // part of the problem's detail
	}{
		{name: "default: the last week", query: "", status: 200, from: "2026-03-08", to: "2026-03-14", days: 7},
		{name: "a range", query: "?from=2026-03-13&to=2026-03-14", status: 200, from: "2026-03-13", to: "2026-03-14", days: 2},
		{name: "the default week cut at the first date", query: "?to=0000-01-03", status: 200, from: "0000-01-01", to: "0000-01-03", days: 3, empty: true},
		{name: "bad from", query: "?from=13.3.2026", status: 400, field: "from"},
		{name: "bad to", query: "?to=yesterday", status: 400, field: "to"},
		{name: "from twice", query: "?from=2026-03-10&from=2026-03-11", status: 400, field: "from"},
		{name: "backwards", query: "?from=2026-03-14&to=2026-03-13", status: 400, field: "from"},
		{name: "over a year", query: "?from=2025-01-01&to=2026-03-14", status: 400, field: "from"},
		{name: "from after the default to", query: "?from=2026-03-15", status: 400, field: "from", detail: "after today (2026-03-14), the default of to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.do(t, http.MethodGet, "/v1/restaurants/"+pizzaID+"/stats"+tt.query, "", nil)
			if tt.status != 200 {
				if p := wantProblem(t, rec, tt.status, tt.field); !strings.Contains(p.Detail, tt.detail) {
					t.Errorf("detail %q does not say %q", p.Detail, tt.detail)
				}
				return
			}
			var got analytics.RestaurantStats
			decode(t, rec, 200, &got)
			if got.RestaurantID != pizzaID || got.From != tt.from || got.To != tt.to || len(got.Days) != tt.days {
				t.Fatalf("stats = %+v", got)
			}
			tot := got.Totals
			if tt.empty {
				if tot.Placed != 0 {
					t.Errorf("totals = %+v; want none", tot)
				}
				return
			}
			if tot.Placed != 2 || tot.Accepted != 1 || tot.Rejected != 1 || tot.MedianSecondsToAccept == nil || *tot.MedianSecondsToAccept != 42 {
				t.Errorf("totals = %+v", tot)
			}
		})
	}
}
