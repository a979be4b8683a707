package api

import (
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/db"
)

// Bounds on a restaurant's order queue page.
const (
	defaultQueueLimit = 100
	maxQueueLimit     = 500
)

type restaurantView struct {
	ID                   string `json:"id"`
	Name                 string `json:"name"`
	AcceptTimeoutSeconds int32  `json:"accept_timeout_seconds"`
}

type restaurantDetailView struct {
	restaurantView
	MenuItems []menuItemView `json:"menu_items"`
}

type menuItemView struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Available  bool   `json:"available"`
}

// orderSummaryView is one order in a restaurant's queue.
type orderSummaryView struct {
	ID              string    `json:"id"`
	Status          string    `json:"status"`
	Reason          string    `json:"reason"`
	CustomerID      string    `json:"customer_id"`
	DeliveryAddress string    `json:"delivery_address"`
	TotalCents      int64     `json:"total_cents"`
	AcceptBy        time.Time `json:"accept_by"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

type customerView struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

func toRestaurantView(r db.Restaurant) restaurantView {
	return restaurantView{ID: r.ID, Name: r.Name, AcceptTimeoutSeconds: r.AcceptTimeoutSeconds}
}

// listRestaurants lists every restaurant by name.
func (s *Server) listRestaurants(c echo.Context) error {
	rows, err := s.store.ListRestaurants(c.Request().Context())
	if err != nil {
		return fmt.Errorf("list restaurants: %w", err)
	}
	out := make([]restaurantView, 0, len(rows))
	for _, r := range rows {
		out = append(out, toRestaurantView(r))
	}
	return c.JSON(http.StatusOK, out)
}

// getRestaurant answers with the restaurant and its whole menu, unavailable
// items included, so a client can show them greyed out.
func (s *Server) getRestaurant(c echo.Context) error {
	ctx := c.Request().Context()
	r, err := s.restaurantParam(c)
	if err != nil {
		return err
	}
	items, err := s.store.ListMenuItems(ctx, r.ID)
	if err != nil {
		return fmt.Errorf("list menu items: %w", err)
	}
	out := restaurantDetailView{restaurantView: toRestaurantView(r), MenuItems: make([]menuItemView, 0, len(items))}
	for _, m := range items {
		out.MenuItems = append(out.MenuItems, menuItemView{ID: m.ID, Name: m.Name, PriceCents: m.PriceCents, Available: m.Available})
	}
	return c.JSON(http.StatusOK, out)
}

// listRestaurantOrders is the restaurant's queue, oldest first, optionally
// of one status only.
func (s *Server) listRestaurantOrders(c echo.Context) error {
	ctx := c.Request().Context()
	params := db.ListRestaurantOrdersParams{MaxRows: defaultQueueLimit}
	if st := c.QueryParam("status"); st != "" {
		if !slices.Contains(orderflow.OrderStatuses, orderflow.OrderStatus(st)) {
			return orderflow.FieldErrorf("status", "unknown status %q; one of %v", st, orderflow.OrderStatuses)
		}
		params.Status = sql.NullString{String: st, Valid: true}
	}
	if raw := c.QueryParam("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxQueueLimit {
			return orderflow.FieldErrorf("limit", "must be an integer from 1 to %d", maxQueueLimit)
		}
		params.MaxRows = int32(n)
	}
	r, err := s.restaurantParam(c)
	if err != nil {
		return err
	}
	params.RestaurantID = r.ID
	rows, err := s.store.ListRestaurantOrders(ctx, params)
	if err != nil {
		return fmt.Errorf("list restaurant orders: %w", err)
	}
	out := make([]orderSummaryView, 0, len(rows))
	for _, o := range rows {
		out = append(out, orderSummaryView{
			ID:              o.ID.String(),
			Status:          o.Status,
			Reason:          o.Reason,
			CustomerID:      o.CustomerID,
			DeliveryAddress: o.DeliveryAddress,
			TotalCents:      o.TotalCents,
			AcceptBy:        o.AcceptBy.UTC(),
			CreatedAt:       o.CreatedAt.UTC(),
			UpdatedAt:       o.UpdatedAt.UTC(),
		})
	}
	return c.JSON(http.StatusOK, out)
}

// restaurantParam loads the restaurant the :id path parameter names.
func (s *Server) restaurantParam(c echo.Context) (db.Restaurant, error) {
	id, err := pathID(c, "restaurant")
	if err != nil {
		return db.Restaurant{}, err
	}
	r, err := s.store.GetRestaurant(c.Request().Context(), id)
	if errors.Is(err, sql.ErrNoRows) {
		return db.Restaurant{}, orderflow.Errorf(orderflow.ENOTFOUND, "no restaurant %q", id)
	} else if err != nil {
		return db.Restaurant{}, fmt.Errorf("get restaurant: %w", err)
	}
	return r, nil
}

// listCustomers lists every customer by name, for demo clients that need
// a customer_id to order with.
func (s *Server) listCustomers(c echo.Context) error {
	rows, err := s.store.ListCustomers(c.Request().Context())
	if err != nil {
		return fmt.Errorf("list customers: %w", err)
	}
	out := make([]customerView, 0, len(rows))
	for _, r := range rows {
		out = append(out, customerView{ID: r.ID, Name: r.Name, Email: r.Email})
	}
	return c.JSON(http.StatusOK, out)
}
