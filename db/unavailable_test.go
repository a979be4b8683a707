package db

import (
	"database/sql/driver"
	"errors"
	"fmt"
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
	}
	for _, tt := range tests {
		if got := Unavailable(tt.err); got != tt.want {
			t.Errorf("%s: Unavailable(%v) = %v; want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
