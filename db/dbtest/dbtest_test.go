package dbtest_test

import (
	"context"
	"os"
	"testing"

	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/db/dbtest"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

func TestNewGivesEachTestAFreshMigratedDatabase(t *testing.T) {
	ctx := context.Background()
	a, b := dbtest.New(t), dbtest.New(t)
	if err := a.UpsertCustomer(ctx, dbUpsert()); err != nil {
		t.Fatalf("insert into a: %v", err)
	}
	got, err := b.ListCustomers(ctx)
	if err != nil {
		t.Fatalf("list b: %v", err)
	}
	if len(got) != 0 {
		t.Fatalf("database b sees %d customers written to a; want 0", len(got))
	}
	n, err := a.CountUnpublishedOutboxEvents(ctx)
	if err != nil || n != 0 {
		t.Fatalf("outbox in a fresh database: %d, %v", n, err)
	}
}

func dbUpsert() db.UpsertCustomerParams {
	return db.UpsertCustomerParams{ID: "c1", Name: "Ada", Email: "ada@example.com"}
}
