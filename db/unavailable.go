package db

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Unavailable tells whether err says that the database could not be
// reached, went away, or is refusing work for now (shutting down, starting
// up, out of connection slots), rather than that a statement was wrong:
// the same request may work a moment later.
func Unavailable(err error) bool {
	// A request whose caller went away is not an outage (pgconn reports
	// it as a timeout too).
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var (
		connect *pgconn.ConnectError
		pg      *pgconn.PgError
		op      *net.OpError
	)
	switch {
	case errors.As(err, &pg):
		// Class 08: connection exception, but for 08P01, a protocol
		// violation (a bug, not an outage). 57P01-57P03: the server is
		// shutting down, crashed, or not accepting connections yet.
		// 53300: too many connections.
		return strings.HasPrefix(pg.Code, "08") && pg.Code != "08P01" ||
			pg.Code == "57P01" || pg.Code == "57P02" || pg.Code == "57P03" || pg.Code == "53300"
	case errors.As(err, &connect), errors.As(err, &op),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, io.ErrUnexpectedEOF),
		pgconn.Timeout(err):
		return true
	}
	return false
}
