package natsdev_test

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/events/natsdev"
)

// TestAnAddressInUseFailsAtOnce: a port another process listens on is
// named at once, with the variable that moves it. The server logged it
// and Start then waited 30 s for a server that would never be ready
// (ignoring Ctrl-C meanwhile); a port out of range, likewise.
func TestAnAddressInUseFailsAtOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for addr, want := range map[string]string{
		l.Addr().String(): "is not free",
		"127.0.0.1:99999": "port must be a number from 0 to 65535",
	} {
		start := time.Now()
		srv, err := natsdev.Start(natsdev.Config{StoreDir: t.TempDir(), Addr: addr, Logger: logger})
		if err == nil {
			srv.Stop()
			t.Fatalf("started on %s", addr)
		}
		if !strings.Contains(err.Error(), want) || time.Since(start) > 5*time.Second {
			t.Errorf("Start on %s = %v after %s; want %q at once", addr, err, time.Since(start).Round(time.Millisecond), want)
		}
		if want == "is not free" && !strings.Contains(err.Error(), "ORDERFLOW_NATS_ADDR") {
			t.Errorf("error %q does not name ORDERFLOW_NATS_ADDR", err)
		}
	}
}
