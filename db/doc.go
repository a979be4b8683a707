// Package db is the order context's PostgreSQL access: migrations embedded
// in the binary, queries written in SQL under queries/ and compiled by sqlc
// into the *.gen.go files (never edited by hand; `make generate`), and the
// one transaction helper every state change goes through.
package db
