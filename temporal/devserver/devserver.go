// Package devserver runs a Temporal server and its Web UI inside the current
// process, persisting to a PostgreSQL server (two databases it creates and
// migrates itself) or to a SQLite file, so that `orderflow dev` and the tests
// need nothing but this binary and the stack's own PostgreSQL. It is the
// embedded default only: production points TEMPORAL_ADDRESS at a real
// cluster and never links this package.
//
// The wiring follows the Temporal CLI's own dev server (temporal server
// start-dev): one process hosts frontend, history, matching and worker
// services on loopback, with static membership.
package devserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/membership/static"
	"go.temporal.io/server/common/primitives"
	"go.temporal.io/server/temporal"

	"github.com/orderflow/orderflow/devstack/freeport"
)

// DatabaseFile is the name of the SQLite file under Config.DataDir.
const DatabaseFile = "temporal.db"

const clusterName = "active"

// Config describes one embedded Temporal server.
type Config struct {
	// Persistence is where the server keeps its state; "" keeps the store
	// DataDir has, or for a new one means DefaultPersistence (see
	// ChoosePersistence). A restart on the same store (DataDir for SQLite,
	// the databases for Postgres) keeps every workflow and its history.
	Persistence Persistence
	// DataDir holds the SQLite file; it is created when missing.
	DataDir string
	// SQLiteJournal (JournalWAL or JournalDelete) and SQLiteSync (SyncFull
	// or SyncNormal) set the SQLite file's journal_mode and synchronous
	// pragmas; "" means DefaultSQLiteJournal and DefaultSQLiteSync.
	SQLiteJournal string
	SQLiteSync    string
	// PostgresURL (postgres://user:password@host:port/db?sslmode=...) names
	// the server and role of the Postgres persistence. The databases
	// PostgresDatabase and PostgresVisibilityDatabase are created on that
	// server when missing (the role then needs CREATEDB); the URL's own
	// database is only used to create them.
	PostgresURL string
	// FrontendAddr is the gRPC frontend address (host:port) clients and
	// workers dial.
	FrontendAddr string
	// UIAddr is where the Temporal Web UI listens (host:port); empty
	// disables the UI.
	UIAddr string
	// Namespace is registered on start if it does not exist yet.
	Namespace string
	// NumHistoryShards is fixed when a store is created: 0 keeps an
	// existing store's count and gives a new one DefaultHistoryShards; any
	// other value that differs from an existing store's fails Start.
	NumHistoryShards int32
	// Logger receives the server's logs at ServerLogLevel and above.
	Logger *slog.Logger
	// ServerLogLevel filters the server's own (very chatty) logs.
	ServerLogLevel slog.Level
}

// Server is a running embedded Temporal server.
type Server struct {
	cfg    Config
	server temporal.Server
	ui     *uiserver.Server
	uiDone chan struct{}
	store  string
	// logLevel is raised on Stop: a stopping server logs every cancelled
	// poll as an error, which tells the user nothing.
	logLevel *slog.LevelVar
}

// Start brings the server up and returns once its frontend accepts
// connections. The caller must call Stop.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	return start(ctx, cfg, freeport.Port)
}

// start is Start with the internal services' ports chosen by pick.
func start(ctx context.Context, cfg Config, pick func(host string) (int, error)) (*Server, error) {
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	cfg.Persistence = ChoosePersistence(cfg.Persistence, cfg.DataDir)
	if cfg.SQLiteJournal == "" {
		cfg.SQLiteJournal = DefaultSQLiteJournal
	}
	if cfg.SQLiteSync == "" {
		cfg.SQLiteSync = DefaultSQLiteSync
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	host, port, err := splitHostPort(cfg.FrontendAddr)
	if err != nil {
		return nil, fmt.Errorf("temporal frontend address %q: %w", cfg.FrontendAddr, err)
	}
	// Fail with a clear message instead of deep inside the server (or, for
	// the UI, with os.Exit) when a port is taken.
	if err := freeport.Check(cfg.FrontendAddr); err != nil {
		return nil, fmt.Errorf("temporal frontend: %w (set ORDERFLOW_TEMPORAL_ADDR to another address)", err)
	}
	if cfg.UIAddr != "" {
		if err := freeport.Check(cfg.UIAddr); err != nil {
			return nil, fmt.Errorf("temporal web ui: %w (set ORDERFLOW_UI_ADDR to another address)", err)
		}
	}
	level := new(slog.LevelVar)
	level.Set(cfg.ServerLogLevel)
	logger := slogAdapter{log: cfg.Logger.With("component", "temporal"), level: level}
	st, err := openStore(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	cfg.Logger.Info("temporal persistence", "store", st.desc, "history_shards", st.persistence.NumHistoryShards)
	srv, fatal, err := buildServer(cfg, host, port, st, level, pick)
	if err != nil {
		return nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("start temporal server: %w", err)
	}
	if err := fatal.get(); err != nil {
		_ = srv.Stop()
		return nil, fmt.Errorf("start temporal server: %w", err)
	}
	s := &Server{cfg: cfg, server: srv, logLevel: level,
		store: fmt.Sprintf("%s, %d history shards", st.desc, st.persistence.NumHistoryShards)}
	if err := waitForDial(ctx, cfg.FrontendAddr); err != nil {
		s.Stop()
		return nil, fmt.Errorf("temporal frontend not reachable: %w", err)
	}
	if cfg.UIAddr != "" {
		if err := s.startUI(ctx); err != nil {
			s.Stop()
			return nil, err
		}
	}
	return s, nil
}

// FrontendAddr is the address clients dial.
func (s *Server) FrontendAddr() string { return s.cfg.FrontendAddr }

// Store says where the server persists, for people: the SQLite file or
// the PostgreSQL databases, and with which settings.
func (s *Server) Store() string { return s.store }

// Namespace is the namespace registered on start.
func (s *Server) Namespace() string { return s.cfg.Namespace }

// UIURL is the Web UI's base URL, or "" when the UI is disabled.
func (s *Server) UIURL() string {
	if s.cfg.UIAddr == "" {
		return ""
	}
	return "http://" + s.cfg.UIAddr
}

// Stop shuts the UI and the server down; it is safe to call more than once.
func (s *Server) Stop() {
	s.logLevel.Set(slog.LevelError + 4)
	if s.ui != nil {
		s.ui.Stop()
		<-s.uiDone
		s.ui = nil
	}
	if s.server != nil {
		if err := s.server.Stop(); err != nil {
			s.cfg.Logger.Warn("stop temporal server", "err", err)
		}
		s.server = nil
	}
}

func (s *Server) startUI(ctx context.Context) error {
	host, port, err := splitHostPort(s.cfg.UIAddr)
	if err != nil {
		return fmt.Errorf("temporal web ui address %q: %w", s.cfg.UIAddr, err)
	}
	s.ui = uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
		Host:                host,
		Port:                port,
		TemporalGRPCAddress: s.cfg.FrontendAddr,
		EnableUI:            true,
		DefaultNamespace:    s.cfg.Namespace,
		CORS:                uiconfig.CORS{CookieInsecure: true},
		HideLogs:            true,
		DisableNewsFetch:    true, // nothing is fetched from the internet at run time
	}))
	s.uiDone = make(chan struct{})
	go func() {
		defer close(s.uiDone)
		if err := s.ui.Start(); err != nil {
			s.cfg.Logger.Error("temporal web ui stopped", "err", err)
		}
	}()
	return waitForHTTP(ctx, "http://"+s.cfg.UIAddr+"/")
}

// buildServer builds (but does not start) the server, on ports pick chooses
// for the services other than the frontend. A build that logged a Fatal
// (a port taken by now, above all) is an error: the server must not start.
// Nothing can stop a server that was never started, so the listeners its
// build did bind stay open until the process exits: a few descriptors, on
// a path that ends in an error anyway.
func buildServer(cfg Config, host string, port int, st *store, level *slog.LevelVar, pick func(host string) (int, error)) (temporal.Server, *fatalLog, error) {
	fatal := new(fatalLog)
	logger := slogAdapter{log: cfg.Logger.With("component", "temporal"), level: level, fatal: fatal}
	conf, err := serverConfig(cfg, host, port, st, pick)
	if err != nil {
		return nil, nil, err
	}
	authorizer, err := authorization.GetAuthorizerFromConfig(&conf.Global.Authorization)
	if err != nil {
		return nil, nil, fmt.Errorf("temporal authorizer: %w", err)
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&conf.Global.Authorization, logger)
	if err != nil {
		return nil, nil, fmt.Errorf("temporal claim mapper: %w", err)
	}
	hosts := map[primitives.ServiceName]static.Hosts{}
	for _, svc := range []primitives.ServiceName{primitives.FrontendService, primitives.HistoryService, primitives.MatchingService, primitives.WorkerService} {
		hosts[svc] = static.SingleLocalHost(net.JoinHostPort(host, strconv.Itoa(conf.Services[string(svc)].RPC.GRPCPort)))
	}
	dyn := dynamicconfig.StaticClient{
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key():                 8192,
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
	}
	srv, err := newServer(fatal,
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dyn),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("build temporal server: %w", err)
	}
	if err := fatal.get(); err != nil {
		return nil, nil, fmt.Errorf("build temporal server: %w", err)
	}
	return srv, fatal, nil
}

// newServer is temporal.NewServer, except that a panic following a logged
// Fatal (in code that was never meant to run after one) becomes that
// Fatal's error.
func newServer(fatal *fatalLog, opts ...temporal.ServerOption) (srv temporal.Server, err error) {
	defer func() {
		if r := recover(); r != nil {
			if ferr := fatal.get(); ferr != nil {
				srv, err = nil, fmt.Errorf("%w (and then panicked: %v)", ferr, r)
				return
			}
			panic(r)
		}
	}()
	return temporal.NewServer(opts...)
}

func serverConfig(cfg Config, host string, port int, st *store, pick func(host string) (int, error)) (*config.Config, error) {
	httpPort, err := pick(host)
	if err != nil {
		return nil, err
	}
	var conf config.Config
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = host
	conf.Persistence = st.persistence
	conf.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             cfg.FrontendAddr,
				HTTPAddress:            net.JoinHostPort(host, strconv.Itoa(httpPort)),
			},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	conf.Services = map[string]config.Service{}
	for _, name := range []string{"frontend", "history", "matching", "worker"} {
		var svc config.Service
		svc.RPC.BindOnIP = host
		if name == "frontend" {
			svc.RPC.GRPCPort = port
			svc.RPC.HTTPPort = httpPort
		} else if svc.RPC.GRPCPort, err = pick(host); err != nil {
			return nil, err
		}
		conf.Services[name] = svc
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = cfg.FrontendAddr
	return &conf, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 {
		return "", 0, fmt.Errorf("port must be a number above 0")
	}
	return host, port, nil
}

func waitForDial(ctx context.Context, addr string) error {
	return poll(ctx, 30*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

func waitForHTTP(ctx context.Context, url string) error {
	return poll(ctx, 30*time.Second, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

func poll(ctx context.Context, limit time.Duration, try func() error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		err := try()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
