// Package natsdev runs a NATS server with JetStream inside the current
// process, for `orderflow dev` and the tests when no NATS_URL is given. It
// listens on a real TCP port so other bounded contexts, in any language, can
// connect to it as to any NATS server.
//
// orderflow dev and bench connect their own process to it in-process
// instead (Server.InProcessConn, through cmd's connect): no socket and no
// wait for Go's network poller, which a busy scheduler consults only when
// its run queues run dry or from its monitor thread every 10-20 ms, so
// that under load each loopback hop to NATS waited for it. The tests and
// other processes connect over TCP. See docs/PERFORMANCE.md ("Lag") for
// what it changed.
//
// # Durability
//
// The server keeps its streams in a file store under StoreDir. It writes
// every message to its file before it acknowledges the publish (a stream of
// one replica flushes in place), so once a publish is acknowledged the
// operating system holds it, and a crash of this process loses nothing.
// What a power loss or an OS crash loses depends on Config.SyncAlways:
//
//   - SyncAlways: every write is synced to disk (O_SYNC) before its
//     acknowledgement, so nothing acknowledged is ever lost; it costs one
//     disk flush per message, which bounds a stream at the disk's flush rate
//     (2,500 to 4,400 messages a second on the machine orderflow was
//     measured on, against about 100,000 with a sync every second).
//   - Otherwise (the default) the file store syncs its message blocks every
//     SyncInterval (DefaultSyncInterval, a second; NATS's own default is two
//     minutes), so a power loss or OS crash can lose the messages
//     acknowledged in the last interval or so (see SyncInterval): the tail
//     of each stream. On restart the file store checks every record's
//     checksum, cuts each block at the first torn or missing record and
//     rebuilds the stream's state and its duplicate window from what is left.
//
// ORDER_EVENTS can afford the second mode because the outbox, not the
// stream, is the system of record: the relay publishes again the rows it
// published in the last interval that the stream no longer holds, before it
// publishes anything new (see events/relay). Streams with no such source
// behind them (DELIVERY_EVENTS as the simulated courier writes it, the dead
// letters, the consumers' delivery state) can lose their last interval on a
// power loss; consumers' acknowledgements lost that way only cause
// redeliveries, which their inboxes absorb.
package natsdev

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/orderflow/orderflow/devstack/freeport"
)

// Config describes one embedded server.
type Config struct {
	// StoreDir holds the JetStream file store.
	StoreDir string
	// Addr is the client host:port; port 0 picks a free one.
	Addr string
	// Logger receives the server's warnings and errors.
	Logger *slog.Logger
	// SyncAlways syncs every write to disk before acknowledging it. When
	// false, the file store syncs every SyncInterval instead (see the
	// package documentation for what each loses).
	SyncAlways bool
	// SyncInterval is how often the file store syncs its writes to disk
	// when SyncAlways is false; zero means DefaultSyncInterval. A message
	// acknowledged at time t is on disk once the first sync that starts
	// after t has finished: within SyncInterval plus the time two syncs
	// take.
	SyncInterval time.Duration
}

// DefaultSyncInterval is the embedded server's sync interval: short enough
// that the tail a power loss can take is a second of events, which the
// outbox relay publishes again in well under a second; long enough that the
// disk's flush rate no longer bounds the stream (one flush per interval and
// block instead of one per message).
const DefaultSyncInterval = time.Second

// Server is a running embedded NATS server.
type Server struct {
	ns *server.Server
}

// Start starts the server and returns once it accepts clients.
func Start(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	host, p, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("nats address %q: %w", cfg.Addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("nats address %q: port must be a number from 0 to 65535", cfg.Addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	} else if err := freeport.Check(cfg.Addr); err != nil {
		// The server would log this and then be waited for in vain.
		return nil, fmt.Errorf("nats address %w: set ORDERFLOW_NATS_ADDR to another address", err)
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("create nats store dir: %w", err)
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	opts := &server.Options{
		ServerName: "orderflow-dev",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		// See the package documentation: with SyncAlways off, an
		// acknowledged publish is in the OS's hands at once and on disk
		// within about SyncInterval; the outbox relay covers that interval
		// by publishing again what the stream lost (events/relay).
		SyncAlways:         cfg.SyncAlways,
		SyncInterval:       cfg.SyncInterval,
		NoSigs:             true,
		MaxPayload:         1 << 20,
		JetStreamMaxMemory: 256 << 20,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	ns.SetLoggerV2(slogLogger{cfg.Logger.With("component", "nats")}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("nats server not ready after 30s (is " + cfg.Addr + " free? set ORDERFLOW_NATS_ADDR to another address)")
	}
	return &Server{ns: ns}, nil
}

// URL is the client URL, e.g. nats://127.0.0.1:4222.
func (s *Server) URL() string { return s.ns.ClientURL() }

// InProcessConn returns a new client connection to the server that does
// not go through the network (a net.Pipe, served by a goroutine of the
// server): pass the server to nats.InProcessServer, which calls it on
// every connect and reconnect.
func (s *Server) InProcessConn() (net.Conn, error) { return s.ns.InProcessConn() }

// Stop shuts the server down and waits until it has.
func (s *Server) Stop() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// slogLogger passes the server's notices, warnings and errors to slog; its
// debug and trace output stays off.
type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l slogLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l slogLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l slogLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l slogLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l slogLogger) Tracef(format string, v ...any)  {}
