package devserver_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/devstack/freeport"
	"github.com/orderflow/orderflow/temporal/devserver"
)

// TestTakenPortIsAnError: the worker service's port is taken by the time
// the server binds it, as when another process binds it after the pick.
// The server logs that at Fatal and goes on with a nil listener; started,
// it crashed the whole process (a nil dereference in grpc's Serve, seen in
// CI). Start must return an error that says which listener and port, and
// leave the process running.
func TestTakenPortIsAnError(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	takenPort := held.Addr().(*net.TCPAddr).Port
	// A build picks the frontend's HTTP port, then history's, matching's
	// and the worker's.
	var mu sync.Mutex
	picks := 0
	pick := func(host string) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		picks++
		if picks == 4 {
			return takenPort, nil
		}
		return freeport.Port(host)
	}
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	cfg := devserver.Config{
		Persistence:  devserver.SQLite,
		DataDir:      t.TempDir(),
		FrontendAddr: addr,
		Logger:       testLogger(t),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := devserver.StartPicking(ctx, cfg, pick)
	if err == nil {
		srv.Stop()
		t.Fatalf("Start succeeded with the worker's port %d taken", takenPort)
	}
	for _, want := range []string{"Failed to start gRPC listener", "service=worker", strconv.Itoa(takenPort)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if picks != 4 {
		t.Errorf("%d ports picked, want 4", picks)
	}
}
