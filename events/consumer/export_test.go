package consumer

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// EmptyReplayFetches makes the fetches of Replay for which empty says so
// come back with nothing, as a fetch on a busy server can, and every
// replay give up after stall empty fetches in a row; until the test ends.
func EmptyReplayFetches(tb testing.TB, stall int, empty func(call int) bool) {
	limit := replayStallFetches
	interceptReplayFetches(tb, func(call int, fetch func() (jetstream.MessageBatch, error)) (jetstream.MessageBatch, error) {
		if empty(call) {
			return emptyBatch{}, nil
		}
		return fetch()
	})
	replayStallFetches = stall
	tb.Cleanup(func() { replayStallFetches = limit })
}

type emptyBatch struct{}

func (emptyBatch) Messages() <-chan jetstream.Msg {
	ch := make(chan jetstream.Msg)
	close(ch)
	return ch
}

func (emptyBatch) Error() error { return nil }

// OnReplayFetch calls before with the number of each fetch of Replay
// before it is made; until the test ends.
func OnReplayFetch(tb testing.TB, before func(call int)) {
	interceptReplayFetches(tb, func(call int, fetch func() (jetstream.MessageBatch, error)) (jetstream.MessageBatch, error) {
		before(call)
		return fetch()
	})
}

// interceptReplayFetches has each fetch of Replay answered by do, given
// the fetch's number and the fetch itself; until the test ends.
func interceptReplayFetches(tb testing.TB, do func(call int, fetch func() (jetstream.MessageBatch, error)) (jetstream.MessageBatch, error)) {
	saved := replayFetch
	call := 0
	replayFetch = func(reader jetstream.Consumer) (jetstream.MessageBatch, error) {
		call++
		return do(call, func() (jetstream.MessageBatch, error) { return saved(reader) })
	}
	tb.Cleanup(func() { replayFetch = saved })
}
