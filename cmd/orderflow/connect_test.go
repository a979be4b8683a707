package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/events/natsdev"
)

// TestConnectInProcessNATS: with EmbeddedNATS set, connect reaches the
// embedded server without the network. The URL it is given names a port
// nothing listens on, so a connection that went over TCP would fail, as
// the same call without EmbeddedNATS shows; and JetStream works over the
// in-process connection (a publish is stored and acknowledged).
func TestConnectInProcessNATS(t *testing.T) {
	srv, err := natsdev.Start(natsdev.Config{StoreDir: t.TempDir(), Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(srv.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const unreachable = "nats://127.0.0.1:1"

	if d, err := connect(ctx, Config{NATSURL: unreachable}, slog.Default(), noDB, true, false); err == nil {
		d.Close()
		t.Fatalf("connect over TCP to %s succeeded; the test needs a URL nothing listens on", unreachable)
	}

	d, err := connect(ctx, Config{NATSURL: unreachable, EmbeddedNATS: srv}, slog.Default(), noDB, true, false)
	if err != nil {
		t.Fatalf("connect in-process: %v", err)
	}
	defer d.Close()
	js, err := jetstream.New(d.nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	ack, err := js.Publish(ctx, "t.one", []byte("x"))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if ack.Stream != "T" || ack.Sequence != 1 {
		t.Errorf("ack %+v; want stream T, sequence 1", ack)
	}
}
