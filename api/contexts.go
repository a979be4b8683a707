package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/analytics"
	"github.com/orderflow/orderflow/promotions"
)

// defaultStatsDays is the range GET /v1/restaurants/{id}/stats covers
// without from: the last week, today included.
const defaultStatsDays = 7

// listCustomerVouchers is the promotions context's vouchers of a customer,
// newest first.
func (s *Server) listCustomerVouchers(c echo.Context) error {
	limit := 0
	if raw := c.QueryParam("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > promotions.MaxVoucherLimit {
			return orderflow.FieldErrorf("limit", "must be an integer from 1 to %d", promotions.MaxVoucherLimit)
		}
		limit = n
	}
	id, err := pathID(c, "customer")
	if err != nil {
		return err
	}
	vs, err := s.vouchers.CustomerVouchers(c.Request().Context(), id, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, vs)
}

// firstDay is the first day a YYYY-MM-DD date can name.
var firstDay = time.Date(0, time.January, 1, 0, 0, 0, 0, time.UTC)

// getRestaurantStats is the analytics context's projection of a restaurant
// over a range of UTC days: ?from=YYYY-MM-DD&to=YYYY-MM-DD, both included;
// to defaults to today, from to six days before to.
func (s *Server) getRestaurantStats(c echo.Context) error {
	to := s.now().UTC()
	toGiven := c.QueryParam("to") != ""
	if raw := c.QueryParam("to"); raw != "" {
		d, err := time.Parse(analytics.DateLayout, raw)
		if err != nil {
			return orderflow.FieldErrorf("to", "%q is not a date (YYYY-MM-DD)", raw)
		}
		to = d
	}
	from := to.AddDate(0, 0, -(defaultStatsDays - 1))
	if from.Before(firstDay) {
		from = firstDay // ?to= in the first week of year 0: no day before it is a date
	}
	if raw := c.QueryParam("from"); raw != "" {
		d, err := time.Parse(analytics.DateLayout, raw)
		if err != nil {
			return orderflow.FieldErrorf("from", "%q is not a date (YYYY-MM-DD)", raw)
		}
		from = d
		if !toGiven && from.After(to) {
			return orderflow.FieldErrorf("from", "%s is after today (%s), the default of to", raw, to.Format(analytics.DateLayout))
		}
	}
	id, err := pathID(c, "restaurant")
	if err != nil {
		return err
	}
	st, err := s.restaurantStats.Stats(c.Request().Context(), id, from, to)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}
