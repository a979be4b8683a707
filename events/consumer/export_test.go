package consumer

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// EmptyReplayFetches makes the fetches of Replay for which empty says so
// come back with nothing, as a fetch on a busy server can, and every
// replay give up after stall empty fetches in a row; until the test ends.
func EmptyReplayFetches(tb testing.TB, stall int, empty func(call int) bool) {
	fetch, limit := replayFetch, replayStallFetches
	call := 0
	replayFetch = func(reader jetstream.Consumer) (jetstream.MessageBatch, error) {
		call++
		if empty(call) {
			return emptyBatch{}, nil
		}
		return fetch(reader)
	}
	replayStallFetches = stall
	tb.Cleanup(func() { replayFetch, replayStallFetches = fetch, limit })
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
	fetch := replayFetch
	call := 0
	replayFetch = func(reader jetstream.Consumer) (jetstream.MessageBatch, error) {
		call++
		before(call)
		return fetch(reader)
	}
	tb.Cleanup(func() { replayFetch = fetch })
}
