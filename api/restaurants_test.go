package api_test

import (
	"net/http"
	"testing"

	"github.com/orderflow/orderflow"
)

func TestRestaurants(t *testing.T) {
	f := newFixture(t)

	t.Run("list", func(t *testing.T) {
		var got []struct {
			ID                   string `json:"id"`
			Name                 string `json:"name"`
			AcceptTimeoutSeconds int    `json:"accept_timeout_seconds"`
		}
		decode(t, f.do(t, http.MethodGet, "/v1/restaurants", "", nil), 200, &got)
		if len(got) != 2 || got[0].ID != pizzaID || got[0].AcceptTimeoutSeconds != 600 || got[1].Name != "Sushi Bar" {
			t.Errorf("restaurants = %+v", got)
		}
	})

	t.Run("one with its menu", func(t *testing.T) {
		var got struct {
			ID        string `json:"id"`
			MenuItems []struct {
				ID         string `json:"id"`
				PriceCents int64  `json:"price_cents"`
				Available  bool   `json:"available"`
			} `json:"menu_items"`
		}
		decode(t, f.do(t, http.MethodGet, "/v1/restaurants/"+pizzaID, "", nil), 200, &got)
		if got.ID != pizzaID || len(got.MenuItems) != 3 {
			t.Fatalf("restaurant = %+v", got)
		}
		for _, m := range got.MenuItems {
			if m.ID == soldOut && m.Available {
				t.Errorf("%s shown as available", soldOut)
			}
		}
	})

	t.Run("unknown", func(t *testing.T) {
		wantProblem(t, f.do(t, http.MethodGet, "/v1/restaurants/r_nope", "", nil), 404, "")
	})

	t.Run("customers", func(t *testing.T) {
		var got []struct{ ID, Name, Email string }
		decode(t, f.do(t, http.MethodGet, "/v1/customers", "", nil), 200, &got)
		if len(got) != 1 || got[0].ID != customerID {
			t.Errorf("customers = %+v", got)
		}
	})
}

func TestRestaurantQueue(t *testing.T) {
	f := newFixture(t)
	waiting := insertOrder(t, f.store, string(orderflow.StatusAwaitingAcceptance))
	insertOrder(t, f.store, string(orderflow.StatusCompleted))

	tests := []struct {
		name   string
		query  string
		status int
		field  string
		want   int
	}{
		{name: "all", query: "", status: 200, want: 2},
		{name: "one status", query: "?status=awaiting_acceptance", status: 200, want: 1},
		{name: "status with no orders", query: "?status=placed", status: 200, want: 0},
		{name: "limit", query: "?limit=1", status: 200, want: 1},
		{name: "limit 500", query: "?limit=500", status: 200, want: 2},
		{name: "unknown status", query: "?status=cooking", status: 400, field: "status"},
		{name: "status in the wrong case", query: "?status=PLACED", status: 400, field: "status"},
		{name: "limit 0", query: "?limit=0", status: 400, field: "limit"},
		{name: "limit 501", query: "?limit=501", status: 400, field: "limit"},
		{name: "limit not a number", query: "?limit=ten", status: 400, field: "limit"},
		{name: "status twice, the second unknown", query: "?status=awaiting_acceptance&status=bogus", status: 400, field: "status"},
		{name: "limit twice", query: "?limit=1&limit=2", status: 400, field: "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.do(t, http.MethodGet, "/v1/restaurants/"+pizzaID+"/orders"+tt.query, "", nil)
			if tt.status != 200 {
				wantProblem(t, rec, tt.status, tt.field)
				return
			}
			var got []struct{ ID, Status string }
			decode(t, rec, 200, &got)
			if got == nil || len(got) != tt.want {
				t.Fatalf("queue = %+v, want %d orders", got, tt.want)
			}
			if tt.want == 1 && tt.name == "one status" && got[0].ID != waiting.String() {
				t.Errorf("queue = %+v, want %s", got, waiting)
			}
		})
	}

	t.Run("unknown restaurant", func(t *testing.T) {
		wantProblem(t, f.do(t, http.MethodGet, "/v1/restaurants/r_nope/orders", "", nil), 404, "")
	})
}

// TestPathIDsWithControlCharacters: an ID no row can have is a 404, not a
// database error surfacing as a 500.
func TestPathIDsWithControlCharacters(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{"/v1/restaurants/%00", "/v1/restaurants/r_%ff", "/v1/restaurants/%00/orders", "/v1/restaurants/%00/stats", "/v1/customers/%00/vouchers"} {
		rec := f.do(t, http.MethodGet, path, "", nil)
		wantProblem(t, rec, http.StatusNotFound, "")
	}
}
