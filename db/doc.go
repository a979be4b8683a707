// Package db is the order context's PostgreSQL access: migrations embedded
// in the binary, queries written in SQL under queries/ and compiled by sqlc
// into the *.gen.go files (never edited by hand; `make generate`), and the
// one transaction helper, InTx, for changes that take several statements.
// An order's steps take one statement each (PlaceOrder, ApplyStep in
// queries/orders.sql): PostgreSQL runs a statement outside a transaction
// block as a transaction of its own, so the order row, its timeline row and
// its outbox row still commit together, in one round trip.
package db
