package freeport_test

import (
	"net"
	"runtime"
	"testing"

	"github.com/orderflow/orderflow/devstack/freeport"
)

// TestPortCanBeBound: the port Port picks is held in TIME_WAIT, which must
// not keep a Go listener from binding it.
func TestPortCanBeBound(t *testing.T) {
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("bind the picked %s: %v", addr, err)
	}
	l.Close()
}

// TestPortIsNotHandedOutAgain: while the picked ports are held, the
// kernel's own picks (port 0) never return one of them. Without the hold,
// Linux hands a just-closed port out again soon enough that a few hundred
// picks see repeats.
func TestPortIsNotHandedOutAgain(t *testing.T) {
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		t.Skip("Port holds ports only on Linux and the BSDs")
	}
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
