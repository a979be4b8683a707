package activities_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/db"
)

// The seed lives in package db; it is tested here, where the activities
// depend on its restaurants, menus and customers.
func TestSeedIsIdempotent(t *testing.T) {
	t.Parallel()
	store := newFixture(t).store // seeded once already
	ctx := t.Context()
	// A demo row edited by hand is restored by the next seed.
	if err := store.UpsertRestaurant(ctx, db.UpsertRestaurantParams{ID: "r_pizza", Name: "Renamed", AcceptTimeoutSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := store.Seed(ctx); err != nil {
			t.Fatalf("Seed: %v", err)
		}
	}
	restaurants, err := store.ListRestaurants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range restaurants {
		ids = append(ids, r.ID)
		if r.AcceptTimeoutSeconds != 600 || r.Name == "Renamed" {
			t.Errorf("restaurant %+v", r)
		}
		menu, err := store.ListMenuItems(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(menu) < 3 || len(menu) > 5 {
			t.Errorf("restaurant %s has %d menu items, want 3 to 5", r.ID, len(menu))
		}
		for _, m := range menu {
			if m.PriceCents <= 0 || !m.Available || !strings.HasPrefix(m.ID, "m_") {
				t.Errorf("menu item %+v", m)
			}
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"r_curry", "r_pizza", "r_sushi"}) {
		t.Errorf("restaurants %v", ids)
	}
	customers, err := store.ListCustomers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(customers) != 2 || customers[0].ID != "c_ada" || customers[1].ID != "c_alan" ||
		customers[0].Email == "" || customers[1].Email == "" {
		t.Errorf("customers %+v", customers)
	}
}
