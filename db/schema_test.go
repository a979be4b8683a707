package db_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/db/dbtest"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// TestCheckSchema: a database with every migration passes, and so does one
// a newer release migrated further; one that lacks a migration, or all of
// them, fails naming what is missing and how to apply it, and the check
// writes nothing (goose's own status calls create the version table).
func TestCheckSchema(t *testing.T) {
	ctx := context.Background()
	store := dbtest.New(t)
	if err := store.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema on a migrated database: %v", err)
	}

	var latest int64
	if err := store.DB.QueryRowContext(ctx, "SELECT max(version_id) FROM goose_db_version").Scan(&latest); err != nil {
		t.Fatal(err)
	}
	if _, err := store.DB.ExecContext(ctx, "INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)", latest+1000); err != nil {
		t.Fatal(err)
	}
	if err := store.CheckSchema(ctx); err != nil {
		t.Errorf("CheckSchema on a database a newer release migrated: %v", err)
	}

	// A row whose is_applied is false (older goose releases recorded a
	// down migration so) still counts, as goose's Provider counts it:
	// otherwise CheckSchema would ask for a migrate that applies nothing.
	if _, err := store.DB.ExecContext(ctx, "INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, false)", latest); err != nil {
		t.Fatal(err)
	}
	if err := store.CheckSchema(ctx); err != nil {
		t.Errorf("CheckSchema with a row is_applied = false for migration %d: %v; want nil, as Migrate sees nothing to apply", latest, err)
	}
	if err := store.Migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if _, err := store.DB.ExecContext(ctx, "DELETE FROM goose_db_version WHERE version_id = $1", latest); err != nil {
		t.Fatal(err)
	}
	err := store.CheckSchema(ctx)
	if !errors.Is(err, db.ErrSchemaBehind) || !strings.Contains(err.Error(), "lacks 1 of") || !strings.Contains(err.Error(), fmt.Sprintf("(%04d_", latest)) || !strings.Contains(err.Error(), "orderflow migrate") {
		t.Errorf("CheckSchema without migration %d = %v; want ErrSchemaBehind naming it and `orderflow migrate`", latest, err)
	}

	if _, err := store.DB.ExecContext(ctx, "DROP TABLE goose_db_version"); err != nil {
		t.Fatal(err)
	}
	err = store.CheckSchema(ctx)
	if !errors.Is(err, db.ErrSchemaBehind) || !strings.Contains(err.Error(), "none of orderflow's") {
		t.Errorf("CheckSchema without a version table = %v; want ErrSchemaBehind saying none is applied", err)
	}
	var table *string
	if err := store.DB.QueryRowContext(ctx, "SELECT to_regclass('goose_db_version')::text").Scan(&table); err != nil || table != nil {
		t.Errorf("after CheckSchema the version table is %v (%v); want it still absent", table, err)
	}
}

// TestCheckSchemaWithoutTheGrant: a role that may not read goose's table
// gets ErrSchemaUnchecked, saying which grant it lacks, not a verdict.
func TestCheckSchemaWithoutTheGrant(t *testing.T) {
	ctx := context.Background()
	u, err := url.Parse(dbtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := db.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	role := fmt.Sprintf("app_%d", os.Getpid())
	if _, err := admin.DB.ExecContext(ctx, "CREATE ROLE "+role+" LOGIN"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.DB.ExecContext(ctx, "DROP ROLE IF EXISTS "+role) })
	u.User = url.User(role)
	limited, err := db.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	err = limited.CheckSchema(ctx)
	limited.Close() // before the role is dropped
	if !errors.Is(err, db.ErrSchemaUnchecked) || errors.Is(err, db.ErrSchemaBehind) || !strings.Contains(err.Error(), "grant SELECT on goose_db_version") {
		t.Errorf("CheckSchema as a role without SELECT on goose_db_version = %v; want ErrSchemaUnchecked naming the grant", err)
	}
}
