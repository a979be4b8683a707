package db

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the connection pool with the generated queries bound to it.
type Store struct {
	*Queries
	DB *sql.DB
}

// Open connects to url (a PostgreSQL connection string) and checks that the
// database answers.
func Open(ctx context.Context, url string) (*Store, error) {
	pool, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	pool.SetMaxOpenConns(32)
	pool.SetMaxIdleConns(32)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.PingContext(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return &Store{Queries: New(pool), DB: pool}, nil
}

// Close closes the pool.
func (s *Store) Close() error { return s.DB.Close() }

// Migrate applies every embedded migration not yet applied.
func (s *Store) Migrate(ctx context.Context, logger *slog.Logger) error {
	provider, err := s.migrations()
	if err != nil {
		return err
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, r := range results {
		logger.Info("applied migration", "version", r.Source.Version, "file", r.Source.Path, "took", r.Duration.Round(time.Millisecond))
	}
	version, err := provider.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("read the schema version: %w", err)
	}
	logger.Info("database schema up to date", "version", version, "applied", len(results))
	return nil
}

// CheckSchema reports an error naming what is missing when the database
// lacks any of the embedded migrations, so that a command started on an
// unmigrated database (a deploy that skipped `orderflow migrate`) refuses
// at once instead of reporting ready and failing every request. It only
// reads: unlike goose's own status calls it does not create the version
// table. A database with migrations this binary does not know (a newer
// release migrated it first, as in a rolling deploy) passes.
//
// Reading goose's table needs SELECT on it: a role without it gets an
// error wrapping ErrSchemaUnchecked, which the caller may choose to go on
// after.
func (s *Store) CheckSchema(ctx context.Context) error {
	provider, err := s.migrations()
	if err != nil {
		return err
	}
	applied, err := s.appliedMigrations(ctx)
	if err != nil {
		return err
	}
	var missing []string
	sources := provider.ListSources()
	for _, src := range sources {
		if !applied[src.Version] {
			missing = append(missing, path.Base(src.Path))
		}
	}
	switch {
	case len(missing) == 0:
		return nil
	case len(missing) == len(sources):
		return fmt.Errorf("%w: the database has none of orderflow's %d migrations: run `orderflow migrate` with the same DATABASE_URL first", ErrSchemaBehind, len(missing))
	default:
		return fmt.Errorf("%w: the database lacks %d of orderflow's migrations (%s): run `orderflow migrate` with the same DATABASE_URL first", ErrSchemaBehind, len(missing), strings.Join(missing, ", "))
	}
}

// Errors CheckSchema's errors wrap.
var (
	// ErrSchemaBehind: migrations are missing.
	ErrSchemaBehind = errors.New("database schema out of date")
	// ErrSchemaUnchecked: the role may not read goose's version table.
	ErrSchemaUnchecked = errors.New("database schema not checked")
)

// appliedMigrations reads which versions goose's table holds: as goose's
// Provider (which Migrate uses) reads it, a version with a row is applied,
// whatever its is_applied says. The name is unqualified, as goose has it:
// both find the table on the role's search_path.
func (s *Store) appliedMigrations(ctx context.Context) (map[int64]bool, error) {
	applied := map[int64]bool{}
	var table sql.NullString
	if err := s.DB.QueryRowContext(ctx, "SELECT to_regclass('goose_db_version')::text").Scan(&table); err != nil {
		return nil, fmt.Errorf("read the schema version: %w", err)
	}
	if !table.Valid {
		return applied, nil
	}
	rows, err := s.DB.QueryContext(ctx, "SELECT DISTINCT version_id FROM goose_db_version")
	if err != nil {
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
			return nil, fmt.Errorf("%w: %w (grant SELECT on goose_db_version to this role)", ErrSchemaUnchecked, err)
		}
		return nil, fmt.Errorf("read the schema version: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read the schema version: %w", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the schema version: %w", err)
	}
	return applied, nil
}

// migrations is the goose provider of the embedded migrations on s.
func (s *Store) migrations() (*goose.Provider, error) {
	provider, err := goose.NewProvider(goose.DialectPostgres, s.DB, mustSub(migrations, "migrations"))
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return provider, nil
}

// InTx runs fn in one transaction and commits it when fn returns nil. A
// change of several statements that emits an event writes its outbox row
// through the same q; the order steps need none, being one statement each.
func (s *Store) InTx(ctx context.Context, fn func(q *Queries) error) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(s.Queries.WithTx(tx)); err != nil {
		return errors.Join(err, rollback(tx))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func rollback(tx *sql.Tx) error {
	if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("rollback: %w", err)
	}
	return nil
}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // dir is a literal embedded at build time
	}
	return sub
}
