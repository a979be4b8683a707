# orderflow — `make run` starts everything, `make test` tests everything.
GO          ?= go
SQLC        := $(GO) tool -modfile=$(CURDIR)/tools/go.mod sqlc
WORKFLOWCHECK := $(GO) tool -modfile=$(CURDIR)/tools/go.mod workflowcheck
BIN         := bin/orderflow
TEST_FLAGS  ?= -count=1 -timeout 20m

.PHONY: run build test unit race generate check-generated lint fmt-check vet clean histories bench

## run: start Temporal (+ Web UI), PostgreSQL, NATS, the worker, the outbox relay, the consumers and the API in one process
run: build
	./$(BIN) dev

## build: compile bin/orderflow
build:
	$(GO) build -o $(BIN) ./cmd/orderflow

## test: lint, check generated code is current, run every test (unit, integration, end-to-end)
test: lint check-generated
	$(GO) test $(TEST_FLAGS) ./...

## unit: the tests that need neither PostgreSQL nor a Temporal server (seconds): workflows on the SDK's test suite, the bench's baselines, event schemas and streams
unit:
	$(GO) test -count=1 ./workflows/... ./bench/... ./events/

## race: every test with the race detector (not in make test: its build of the Temporal server takes minutes more, and the tests run slower); the orderflow binary the end-to-end tests start is not race-built
race:
	$(GO) test -race $(TEST_FLAGS) ./...

## bench: measure end to end next to bare-Temporal baselines (BENCH_FLAGS, e.g. -n 1000 -c 50 -rounds 3); writes bench/results
BENCH_FLAGS ?=
bench: build
	./$(BIN) bench $(BENCH_FLAGS)

## histories: record each order path on the embedded stack and add the histories of new shapes to tests/testdata/histories (never overwrites one)
histories:
	$(GO) test -count=1 -run '^TestOrderPaths$$' ./tests/ -args -record
	$(GO) test -count=1 -run '^TestReplayRecordedHistories$$' ./tests/

## generate: regenerate the sqlc code from db/queries and db/migrations
generate:
	cd db && $(SQLC) generate

## check-generated: fail when the committed sqlc code is stale
check-generated:
	@cd db && $(SQLC) diff || { echo "db: generated code is stale: run 'make generate' and commit the result" >&2; exit 1; }

## lint: gofmt, go vet, and workflowcheck: workflow code must stay deterministic
lint: fmt-check vet
	$(WORKFLOWCHECK) ./workflows/...

fmt-check:
	@unformatted=$$("$$($(GO) env GOROOT)/bin/gofmt" -l .); \
	if [ -n "$$unformatted" ]; then echo "not gofmt-ed (run gofmt -w on them):" $$unformatted >&2; exit 1; fi

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
