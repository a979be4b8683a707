// Package api is orderflow's HTTP interface (echo): it starts and drives
// order workflows, reads the order read model, serves the read side of the
// promotions and analytics contexts (which it imports; they know nothing of
// HTTP), and reports health. Every
// error is an application/problem+json response; the routes are described
// by the OpenAPI document served at /openapi.yaml.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"go.temporal.io/sdk/client"

	"github.com/orderflow/orderflow/analytics"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/promotions"
	"github.com/orderflow/orderflow/workflows"
)

// Check reports whether one dependency answers.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Config holds the API's dependencies. Main builds each of them once and
// hands them in; the API reads no environment of its own.
type Config struct {
	Logger *slog.Logger
	// Readiness lists what /readyz checks.
	Readiness []Check

	// Store is the read model and the menu the API prices orders from. The
	// order, restaurant and customer routes exist only when it is set, so
	// that a health-only server needs no database.
	Store *db.Store
	// Temporal starts, queries and updates order workflows; it is required
	// whenever Store is set.
	Temporal client.Client
	// TaskQueue is where order workflows are started; the worker polls it.
	TaskQueue string
	// AcceptTimeout, when positive, overrides every restaurant's own
	// accept_timeout_seconds: demos and tests need a short, uniform window.
	AcceptTimeout time.Duration
	// DeliverySLA is how long delivery may take after acceptance before the
	// order is escalated; zero means workflows.DefaultDeliverySLA.
	DeliverySLA time.Duration
	// Now is the clock orders are stamped with; nil means time.Now. Tests
	// set it to assert exact deadlines.
	Now func() time.Time

	// Promotions and Analytics, when set, mount the read side of those
	// bounded contexts: GET /v1/customers/{id}/vouchers and GET
	// /v1/restaurants/{id}/stats. The API imports the contexts, never the
	// reverse, and they need no Store or Temporal of the API's.
	Promotions *promotions.Service
	Analytics  *analytics.Service
}

// Server is the HTTP API.
type Server struct {
	echo   *echo.Echo
	logger *slog.Logger
	checks []Check

	store         *db.Store
	temporal      client.Client
	taskQueue     string
	acceptTimeout time.Duration
	deliverySLA   time.Duration
	now           func() time.Time

	vouchers        *promotions.Service
	restaurantStats *analytics.Service
}

// New builds the API and its routes. It panics when Store is set without
// Temporal: that is a wiring mistake in main, not a runtime condition.
func New(cfg Config) *Server {
	s := &Server{
		echo:          echo.New(),
		logger:        cfg.Logger,
		checks:        cfg.Readiness,
		store:         cfg.Store,
		temporal:      cfg.Temporal,
		taskQueue:     cfg.TaskQueue,
		acceptTimeout: cfg.AcceptTimeout,
		deliverySLA:   cfg.DeliverySLA,
		now:           cfg.Now,

		vouchers:        cfg.Promotions,
		restaurantStats: cfg.Analytics,
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.deliverySLA <= 0 {
		s.deliverySLA = workflows.DefaultDeliverySLA
	}
	if s.now == nil {
		s.now = time.Now
	}
	e := s.echo
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.Use(middleware.Recover())
	e.Use(middleware.RequestID())
	e.Use(singleQueryValues)

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/openapi.yaml", s.openapi)
	if s.vouchers != nil {
		e.GET("/v1/customers/:id/vouchers", s.listCustomerVouchers)
	}
	if s.restaurantStats != nil {
		e.GET("/v1/restaurants/:id/stats", s.getRestaurantStats)
	}
	if s.store == nil {
		return s
	}
	if s.temporal == nil {
		panic("api: Config.Temporal is required when Config.Store is set")
	}
	e.POST("/v1/orders", s.placeOrder)
	e.GET("/v1/orders/:id", s.getOrder)
	e.GET("/v1/orders/:id/events", s.listOrderEvents)
	e.POST("/v1/orders/:id/accept", s.acceptOrder)
	e.POST("/v1/orders/:id/reject", s.rejectOrder)
	e.POST("/v1/orders/:id/cancel", s.cancelOrder)
	e.POST("/v1/orders/:id/delivered", s.deliveredOrder)
	e.GET("/v1/restaurants", s.listRestaurants)
	e.GET("/v1/restaurants/:id", s.getRestaurant)
	e.GET("/v1/restaurants/:id/orders", s.listRestaurantOrders)
	e.GET("/v1/customers", s.listCustomers)
	e.GET("/v1/outbox/stats", s.outboxStats)
	return s
}

// Route is one method and path the API serves, with path parameters in
// OpenAPI's "{id}" syntax, so the OpenAPI document can be checked against
// the router instead of drifting from it.
type Route struct {
	Method string
	Path   string
}

// Routes lists every route the server registered.
func (s *Server) Routes() []Route {
	var routes []Route
	for _, r := range s.echo.Routes() {
		segs := strings.Split(r.Path, "/")
		for i, seg := range segs {
			if name, ok := strings.CutPrefix(seg, ":"); ok {
				segs[i] = "{" + name + "}"
			}
		}
		routes = append(routes, Route{Method: r.Method, Path: strings.Join(segs, "/")})
	}
	return routes
}

// Handler is the API as an http.Handler, for tests and embedding.
func (s *Server) Handler() http.Handler { return headAsGet{s.echo} }

// headAsGet answers HEAD wherever GET is answered, as RFC 9110 asks (echo
// routes HEAD only where it is registered): the router gets a copy of the
// request whose method is GET, and net/http, which still holds the HEAD
// request, sends the status and headers, Content-Length included, without
// the body. HEAD on a route without GET is a 405, as GET there would be.
// The Allow header of an OPTIONS answer names HEAD too, as a 405's does.
type headAsGet struct{ next http.Handler }

func (h headAsGet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodHead:
		r = r.WithContext(r.Context()) // a shallow copy
		r.Method = http.MethodGet
	case http.MethodOptions:
		w = &allowingHead{ResponseWriter: w}
	}
	h.next.ServeHTTP(w, r)
}

// allowHead adds HEAD to an Allow header that names GET: echo lists the
// methods registered, and HEAD is answered wherever GET is.
func allowHead(h http.Header) {
	if allow := h.Get("Allow"); strings.Contains(allow, http.MethodGet) && !strings.Contains(allow, http.MethodHead) {
		h.Set("Allow", allow+", "+http.MethodHead)
	}
}

// allowingHead is a ResponseWriter whose Allow header gets HEAD (allowHead)
// before the header is sent.
type allowingHead struct {
	http.ResponseWriter
	sent bool
}

func (w *allowingHead) WriteHeader(code int) {
	if !w.sent {
		w.sent = true
		allowHead(w.Header())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *allowingHead) Write(b []byte) (int, error) {
	if !w.sent {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController the connection's own writer.
func (w *allowingHead) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// readTimeout bounds the read of a request, its body included.
const readTimeout = 30 * time.Second

// Serve serves on l until ctx is done, then stops accepting connections
// and returns once the requests in flight have been answered.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler: s.Handler(),
		// A client that trickles its headers or its body (at most 64 KiB)
		// does not hold a connection and a goroutine for ever; nor does an
		// idle keep-alive connection. There is no write timeout: an accept
		// or delivered request waits up to updateTimeout for the workflow.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       readTimeout,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	// The longest request is an accept or delivered Update, which waits up
	// to updateTimeout for the workflow: cutting it short would leave its
	// caller without the answer. Shutdown returns as soon as the requests
	// in flight are answered, at once when there are none.
	sctx, cancel := context.WithTimeout(context.Background(), updateTimeout+5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down http: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// healthz answers 200 while the process is alive.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 only when every dependency answers, 503 otherwise,
// naming each dependency's state.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	type answer struct {
		name string
		err  error
	}
	answers := make(chan answer, len(s.checks))
	for _, chk := range s.checks {
		go func() { answers <- answer{chk.Name, chk.Check(ctx)} }()
	}
	status, code := "ready", http.StatusOK
	states := make(map[string]string, len(s.checks))
	for range s.checks {
		a := <-answers
		states[a.name] = "ok"
		if a.err != nil {
			states[a.name] = a.err.Error()
			status, code = "unavailable", http.StatusServiceUnavailable
		}
	}
	return c.JSON(code, map[string]any{"status": status, "checks": states})
}
