// Package freeport picks loopback TCP ports for the embedded servers and the
// tests: ports that are free now and that the kernel will not hand to
// anybody else for about a minute, the time a server takes to bind one.
//
// A port that was merely free a moment ago is not enough. The kernel hands
// out a just-closed port again, to the next process asking for port 0 or
// as the source port of an outgoing connection. With tests of several
// packages starting servers at once on two cores, that happened between
// the pick and the bind: the Temporal server then came up on a nil
// listener and crashed the test process. So Port leaves the port in
// TIME_WAIT, which keeps the kernel from reusing it (on Linux and the
// BSDs) but lets a listener with SO_REUSEADDR, as Go's are, bind it.
package freeport

import (
	"fmt"
	"net"
	"runtime"
	"strconv"
)

// Port returns a free TCP port on host (an IP address, such as 127.0.0.1).
// For about a minute, only a listener that sets SO_REUSEADDR can bind it:
// Go's, PostgreSQL's and NATS's do; another would get EADDRINUSE.
func Port(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", host, err)
	}
	defer l.Close()
	addr := l.Addr().(*net.TCPAddr)
	// Not done on macOS and Windows, where it is not verified (and on
	// Windows SO_REUSEADDR means something else): there the port is only
	// free a moment ago.
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		return addr.Port, nil
	}
	if err := holdInTimeWait(l, addr); err != nil {
		return 0, fmt.Errorf("reserve port %d on %s: %w", addr.Port, host, err)
	}
	return addr.Port, nil
}

// Addr is Port on 127.0.0.1, as host:port.
func Addr() (string, error) {
	port, err := Port("127.0.0.1")
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// Check reports whether addr (host:port) can be listened on now, with an
// error naming it when it cannot: a server started on a taken port would
// log that and leave its caller waiting.
func Check(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s is not free: %w", addr, err)
	}
	return l.Close()
}

// holdInTimeWait connects to l and closes the connection from l's side
// first: the side that closes first keeps the connection in TIME_WAIT, and
// that side's port is the one we picked.
func holdInTimeWait(l net.Listener, addr *net.TCPAddr) error {
	client, err := net.DialTCP("tcp", nil, addr)
	if err != nil {
		return err
	}
	defer client.Close()
	server, err := l.Accept()
	if err != nil {
		return err
	}
	return server.Close()
}
