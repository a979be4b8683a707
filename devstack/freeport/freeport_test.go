package freeport_test

import (
	"net"
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
