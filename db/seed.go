package db

import (
	"context"
	"fmt"
)

// seedRestaurant is a restaurant of the demo data set with its menu.
type seedRestaurant struct {
	id, name string
	menu     []seedMenuItem
}

type seedMenuItem struct {
	id, name   string
	priceCents int64
}

// seedRestaurants and seedCustomers are the demo data set. The ids are
// stable so that docs, tests and curl examples can name them.
var (
	seedRestaurants = []seedRestaurant{
		{id: "r_pizza", name: "Pizzeria Napoli", menu: []seedMenuItem{
			{"m_margherita", "Margherita", 1150},
			{"m_marinara", "Marinara", 950},
			{"m_diavola", "Diavola", 1350},
			{"m_quattro_formaggi", "Quattro Formaggi", 1400},
		}},
		{id: "r_sushi", name: "Sushi Kaito", menu: []seedMenuItem{
			{"m_salmon_nigiri", "Salmon Nigiri (2 pcs)", 600},
			{"m_tuna_maki", "Tuna Maki (6 pcs)", 750},
			{"m_california_roll", "California Roll (8 pcs)", 1100},
			{"m_miso_soup", "Miso Soup", 350},
		}},
		{id: "r_curry", name: "Curry Corner", menu: []seedMenuItem{
			{"m_butter_chicken", "Butter Chicken", 1450},
			{"m_chana_masala", "Chana Masala", 1150},
			{"m_garlic_naan", "Garlic Naan", 400},
			{"m_mango_lassi", "Mango Lassi", 450},
		}},
	}
	seedCustomers = []UpsertCustomerParams{
		{ID: "c_ada", Name: "Ada Lovelace", Email: "ada@example.com"},
		{ID: "c_alan", Name: "Alan Turing", Email: "alan@example.com"},
	}
)

// seedAcceptTimeoutSeconds gives every demo restaurant the default ten
// minutes to accept an order.
const seedAcceptTimeoutSeconds = 600

// Seed writes the demo restaurants, menus and customers so that a fresh
// `orderflow dev` can take orders at once. It upserts in one transaction, so
// running it on every start is safe and restores edited demo rows.
func (s *Store) Seed(ctx context.Context) error {
	return s.InTx(ctx, func(q *Queries) error {
		for _, r := range seedRestaurants {
			if err := q.UpsertRestaurant(ctx, UpsertRestaurantParams{
				ID: r.id, Name: r.name, AcceptTimeoutSeconds: seedAcceptTimeoutSeconds,
			}); err != nil {
				return fmt.Errorf("seed restaurant %s: %w", r.id, err)
			}
			for _, m := range r.menu {
				if err := q.UpsertMenuItem(ctx, UpsertMenuItemParams{
					ID: m.id, RestaurantID: r.id, Name: m.name, PriceCents: m.priceCents, Available: true,
				}); err != nil {
					return fmt.Errorf("seed menu item %s: %w", m.id, err)
				}
			}
		}
		for _, c := range seedCustomers {
			if err := q.UpsertCustomer(ctx, c); err != nil {
				return fmt.Errorf("seed customer %s: %w", c.ID, err)
			}
		}
		return nil
	})
}
