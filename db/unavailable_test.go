package db

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestUnavailable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"a statement's error", errors.New("syntax error"), false},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"server shutting down", fmt.Errorf("get order: %w", &pgconn.PgError{Code: "57P01"}), true},
		{"server starting up", &pgconn.PgError{Code: "57P03"}, true},
		{"connection exception", &pgconn.PgError{Code: "08006"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"bad connection", fmt.Errorf("list: %w", driver.ErrBadConn), true},
		{"closed connection", fmt.Errorf("q: %w", pgconn.ErrConnClosed), true},
		{"refused", fmt.Errorf("q: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), true},
		{"protocol violation", &pgconn.PgError{Code: "08P01"}, false},
		{"some other deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), false},
		{"caller gone", fmt.Errorf("q: %w", context.Canceled), false},
	}
	for _, tt := range tests {
		if got := Unavailable(tt.err); got != tt.want {
			t.Errorf("%s: Unavailable(%v) = %v; want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
