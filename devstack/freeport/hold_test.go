//go:build !darwin && !windows

// Port holds the ports it picks only where it leaves them in TIME_WAIT
// (see Port); elsewhere this file is not built.

package freeport_test

import (
	"net"
	"testing"

	"github.com/orderflow/orderflow/devstack/freeport"
)

// TestPortIsNotHandedOutAgain: while the picked ports are held, the
// kernel's own picks (port 0) never return one of them. Without the hold,
// Linux hands a just-closed port out again soon enough that a few hundred
// picks see repeats.
func TestPortIsNotHandedOutAgain(t *testing.T) {
	picked := map[int]bool{}
	for range 200 {
		port, err := freeport.Port("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if picked[port] {
			t.Fatalf("port %d picked twice", port)
		}
		picked[port] = true
	}
	for range 200 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if picked[port] {
			t.Fatalf("the kernel handed out port %d again while it was held", port)
		}
	}
}
