// Package api is orderflow's HTTP interface (echo): it starts and drives
// order workflows, reads the order read model, and reports health. Every
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
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// Check reports whether one dependency answers.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Config holds the API's dependencies.
type Config struct {
	Logger *slog.Logger
	// Readiness lists what /readyz checks.
	Readiness []Check
}

// Server is the HTTP API.
type Server struct {
	echo   *echo.Echo
	logger *slog.Logger
	checks []Check
}

// New builds the API and its routes.
func New(cfg Config) *Server {
	s := &Server{echo: echo.New(), logger: cfg.Logger, checks: cfg.Readiness}
	e := s.echo
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.Use(middleware.Recover())
	e.Use(middleware.RequestID())

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	return s
}

// Handler is the API as an http.Handler, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.echo }

// Serve serves on l until ctx is done, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: s.echo, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
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
