package events_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/devstack/freeport"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/natsdev"
)

// TestEnsureStreams: both streams are created as the bus contract says,
// a second call changes nothing, and a new max age updates them in place.
func TestEnsureStreams(t *testing.T) {
	ctx := context.Background()
	js := startNATS(t)
	if err := events.EnsureStreams(ctx, js, events.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, js, events.StreamConfig{}); err != nil {
		t.Fatalf("second call: %v", err)
	}
	for _, tt := range []struct {
		stream, subjects string
	}{
		{events.OrderStream, "orderflow.order.>"},
		{events.DeliveryStream, "orderflow.delivery.>"},
	} {
		cfg := streamConfig(t, js, tt.stream)
		if len(cfg.Subjects) != 1 || cfg.Subjects[0] != tt.subjects {
			t.Errorf("%s subjects = %v, want [%s]", tt.stream, cfg.Subjects, tt.subjects)
		}
		if cfg.Storage != jetstream.FileStorage || cfg.Retention != jetstream.LimitsPolicy || cfg.Discard != jetstream.DiscardOld {
			t.Errorf("%s: storage %v, retention %v, discard %v; want file, limits, old", tt.stream, cfg.Storage, cfg.Retention, cfg.Discard)
		}
		if cfg.MaxAge != events.DefaultMaxAge || cfg.Duplicates != events.DefaultDuplicateWindow || cfg.Duplicates < 10*time.Minute {
			t.Errorf("%s: max age %s, duplicates %s; want %s and %s", tt.stream, cfg.MaxAge, cfg.Duplicates, events.DefaultMaxAge, events.DefaultDuplicateWindow)
		}
	}

	if err := events.EnsureStreams(ctx, js, events.StreamConfig{MaxAge: 72 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if got := streamConfig(t, js, events.OrderStream).MaxAge; got != 72*time.Hour {
		t.Errorf("max age after the update = %s, want 72h", got)
	}
	if err := events.EnsureStreams(ctx, js, events.StreamConfig{MaxAge: time.Minute}); err == nil {
		t.Error("a duplicate window longer than the max age was accepted")
	}
}

func streamConfig(tb testing.TB, js jetstream.JetStream, name string) jetstream.StreamConfig {
	tb.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		tb.Fatalf("stream %s: %v", name, err)
	}
	return s.CachedInfo().Config
}

// startNATS runs the embedded server on a free port for the test.
func startNATS(tb testing.TB) jetstream.JetStream {
	tb.Helper()
	s, err := natsdev.Start(natsdev.Config{
		StoreDir: filepath.Join(tb.TempDir(), "nats"), Addr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatalf("start nats: %v", err)
	}
	tb.Cleanup(s.Stop)
	return connect(tb, s.URL())
}

// connect is a JetStream client of the server at url, closed at the end.
func connect(tb testing.TB, url string) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

// TestStreamReplicasAreNeverLowered: on a three-node NATS cluster, a
// stream an operator gave three replicas keeps them when an orderflow
// process starts and asks for its default of one, as every one does.
func TestStreamReplicasAreNeverLowered(t *testing.T) {
	ctx := context.Background()
	js := startCluster(t, 3)
	if err := events.EnsureStreams(ctx, js, events.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if got := streamConfig(t, js, events.OrderStream).Replicas; got != 1 {
		t.Fatalf("a new stream has %d replicas, want the default 1", got)
	}
	// The operator: nats stream edit ORDER_EVENTS --replicas 3.
	cfg := streamConfig(t, js, events.OrderStream)
	cfg.Replicas = 3
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	// The next relay or consumer to start.
	if err := events.EnsureStreams(ctx, js, events.StreamConfig{MaxAge: 72 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	got := streamConfig(t, js, events.OrderStream)
	if got.Replicas != 3 || got.MaxAge != 72*time.Hour {
		t.Errorf("after a start: %d replicas, max age %s; want the operator's 3 kept and the configured 72h", got.Replicas, got.MaxAge)
	}
	if err := events.EnsureStreams(ctx, js, events.StreamConfig{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if got := streamConfig(t, js, events.DeliveryStream).Replicas; got != 3 {
		t.Errorf("asked for 3 replicas: %d", got)
	}
}

// startCluster runs a JetStream cluster of n in-process NATS servers on
// loopback and returns a JetStream client of the first, once the cluster
// has a meta leader.
func startCluster(tb testing.TB, n int) jetstream.JetStream {
	tb.Helper()
	ports := make([]int, n)
	var routes []string
	for i := range ports {
		p, err := freeport.Port("127.0.0.1")
		if err != nil {
			tb.Fatal(err)
		}
		ports[i] = p
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	var servers []*server.Server
	for i := range n {
		ns, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: tb.TempDir(), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "orderflow-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		})
		if err != nil {
			tb.Fatal(err)
		}
		ns.Start()
		tb.Cleanup(ns.Shutdown)
		servers = append(servers, ns)
	}
	for _, ns := range servers {
		if !ns.ReadyForConnections(30 * time.Second) {
			tb.Fatalf("nats %s not ready", ns.Name())
		}
	}
	js := connect(tb, servers[0].ClientURL())
	deadline := time.Now().Add(60 * time.Second)
	for {
		actx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			return js
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the cluster has no JetStream meta leader after 60s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
