// Package pgdev runs a private PostgreSQL cluster from the machine's own
// server binaries (initdb, postgres), for `orderflow dev` and the tests when
// no DATABASE_URL is given. The cluster lives in a directory of its own, is
// created on first start and reused after, listens on loopback only, and
// trusts local connections: it is for development, never production.
package pgdev

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// Database and User name the database and role created in the cluster.
const (
	Database = "orderflow"
	User     = "orderflow"
)

// Config describes one private cluster.
type Config struct {
	// Dir holds the cluster (created by initdb when empty) and its log.
	Dir string
	// Addr is the loopback host:port the server listens on.
	Addr string
	// Durable=false turns fsync off: for throwaway test clusters only.
	Durable bool
	// Settings are more server settings, each "name=value", given to the
	// server on its command line (-c) at every start.
	Settings []string
	// Logger receives progress messages.
	Logger *slog.Logger
}

// Server is a running private PostgreSQL server.
type Server struct {
	cfg    Config
	bin    string
	cred   *syscall.Credential
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	// stopping is set when Stop ends the running server, so that its exit
	// is not taken for a crash.
	stopping *atomic.Bool
	// died receives the error of a server that exited by itself.
	died chan error
}

// Start initialises the cluster if needed, starts the server and creates the
// orderflow database. It returns once the database accepts connections.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("postgres address %q: %w", cfg.Addr, err)
	}
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, bin: bin, cred: cred, died: make(chan error, 1)}
	if err := s.initdb(ctx); err != nil {
		return nil, err
	}
	if err := s.Restart(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// URL is the connection string for the orderflow database.
func (s *Server) URL() string {
	u := url.URL{Scheme: "postgres", User: url.User(User), Host: s.cfg.Addr, Path: "/" + Database, RawQuery: "sslmode=disable"}
	return u.String()
}

// FindBinaries returns the directory holding initdb and postgres: from PATH
// first, then the newest /usr/lib/postgresql/*/bin.
func FindBinaries() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin: " +
		"install them (Debian/Ubuntu: apt-get install postgresql) or set DATABASE_URL to an existing database")
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// serverCredential picks the user the server runs as. PostgreSQL refuses to
// run as root, so when we are root it runs as "postgres" (or "nobody").
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root and neither a postgres nor a nobody user exists: PostgreSQL refuses to run as root; run as another user or set DATABASE_URL")
}

func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: s.cred,
		// Own process group, so a Ctrl-C on the terminal reaches only us and
		// we shut the server down in order.
		Setpgid: true,
	}
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	return cmd
}

// lock takes the cluster's lock, an flock(2) on the file beside it, which
// the processes of a run (initdb or the server) hold: the caller hands the
// returned file to the process it starts (exec.Cmd.ExtraFiles), and the
// children that process forks inherit it. The lock so lasts, whatever
// becomes of us, until the last of them has exited.
//
// A start after one whose process was killed (kill -9) waits here for that
// run's processes. Killing us does not end them at once: the server has
// only just been sent its parent-death signal and takes a moment to shut
// down, and while it does, its postmaster.pid names a live process, which a
// server started meanwhile takes for another postmaster and refuses to run
// beside; an initdb would write into the directory a new initdb writes in.
// A pid file is not removed here: only the server knows when it may be.
// (devstack's data-dir lock is flock(2) too, but orderflow's own, failing
// at once where this one waits; devstack imports this package, not the
// other way round.)
func (s *Server) lock(ctx context.Context) (*os.File, error) {
	path := s.cfg.Dir + ".lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open postgres lock: %w", err)
	}
	const patience = 60 * time.Second
	deadline := time.Now().Add(patience)
	for logged := false; ; logged = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !logged {
			s.cfg.Logger.Info("waiting for the postgres processes of an earlier run to exit", "dir", s.cfg.Dir)
		}
		if time.Now().After(deadline) {
			f.Close()
			named := ""
			if pid := postmasterPID(s.cfg.Dir); pid != "" {
				named = ", the postmaster pid " + pid
			}
			return nil, fmt.Errorf("postgres processes of an earlier run on %s have not exited after %s (they hold %s open: fuser -v %[3]s lists them%s): stop them and start again", s.cfg.Dir, patience, path, named)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for the postgres processes of an earlier run on %s: %w", s.cfg.Dir, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// postmasterPID is the pid named by the cluster's postmaster.pid, "" when
// there is none.
func postmasterPID(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return ""
	}
	pid, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimSpace(pid)
}

func (s *Server) initdb(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.cfg.Dir, "PG_VERSION")); err == nil {
		return nil
	}
	// The lock lives beside the cluster. 0755: the server may run as
	// another user, who must be able to enter the directories above it.
	if err := os.MkdirAll(filepath.Dir(s.cfg.Dir), 0o755); err != nil {
		return fmt.Errorf("create postgres dir: %w", err)
	}
	// An initdb left running by a killed first start is ended by its
	// parent-death signal; its directory is removed once it has gone.
	lock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer lock.Close()
	// initdb writes into a directory of its own, moved into place once it
	// has succeeded: a first start stopped during initdb (a Ctrl-C) leaves
	// no half-made cluster that every later start would try to run.
	tmp := s.cfg.Dir + ".initdb"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove an earlier unfinished initdb: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fmt.Errorf("create postgres dir: %w", err)
	}
	if s.cred != nil {
		if err := os.Chown(tmp, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("hand postgres dir to uid %d: %w", s.cred.Uid, err)
		}
		if err := reachable(tmp); err != nil {
			return err
		}
	}
	s.cfg.Logger.Info("creating private postgres cluster", "dir", s.cfg.Dir)
	cmd := s.command(ctx, "initdb", "-D", tmp, "-U", User, "-A", "trust", "-E", "UTF8", "--no-instructions")
	// Killed with us: what it leaves is in tmp, which the next start
	// removes. It and the backends it runs hold the lock until they exit.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.ExtraFiles = []*os.File{lock}
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		if ctx.Err() != nil {
			return fmt.Errorf("initdb: %w", ctx.Err())
		}
		return fmt.Errorf("initdb: %w: %s", err, strings.TrimSpace(string(out)))
	}
	// An empty directory where the cluster goes (made by hand, say) is
	// replaced; one holding anything else is not ours to remove.
	if err := os.Remove(s.cfg.Dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		os.RemoveAll(tmp)
		return fmt.Errorf("%s holds files but no PostgreSQL cluster: remove it, or choose another ORDERFLOW_DATA_DIR (%w)", s.cfg.Dir, err)
	}
	if err := os.Rename(tmp, s.cfg.Dir); err != nil {
		return fmt.Errorf("move the new cluster into place: %w", err)
	}
	return nil
}

// reachable checks that every parent of dir can be entered by others, since
// the server runs as another user than ours.
func reachable(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("postgres runs as an unprivileged user and cannot enter %s (mode %v): chmod o+x it or choose another ORDERFLOW_DATA_DIR", p, fi.Mode().Perm())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// Restart starts the server if it is not running; Start calls it, and tests
// call it after Stop. It first waits, up to a minute, for the processes of
// an earlier run on the directory to exit (see lock).
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		select {
		case <-s.exited: // died by itself: start it again
			s.cmd = nil
		default:
			return nil
		}
	}
	select { // a death nobody read is of the run before this one
	case <-s.died:
	default:
	}
	// The processes of an earlier run go first: the lines they write to
	// the log while they exit must come before this start's (logStart).
	lock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(s.cfg.Addr)
	logFile, err := os.OpenFile(filepath.Join(filepath.Dir(s.cfg.Dir), filepath.Base(s.cfg.Dir)+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		lock.Close()
		return fmt.Errorf("open postgres log: %w", err)
	}
	var logStart int64 // where this start's lines begin
	if st, err := logFile.Stat(); err == nil {
		logStart = st.Size()
	}
	args := []string{"-D", s.cfg.Dir,
		"-c", "listen_addresses=" + host, "-p", port,
		"-c", "unix_socket_directories=", // TCP on loopback only
		"-c", "max_connections=200",
	}
	for _, setting := range s.cfg.Settings {
		args = append(args, "-c", setting)
	}
	if !s.cfg.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	// postgres runs as our child, not daemonised by pg_ctl: with a
	// parent-death signal it stops (fast shutdown) even when we are killed.
	cmd := s.command(context.Background(), "postgres", args...)
	cmd.SysProcAttr.Pdeathsig = syscall.SIGINT
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The server and every process it forks hold the lock until they exit;
	// our copy goes at once, so that the lock is free once they have.
	cmd.ExtraFiles = []*os.File{lock}
	err = cmd.Start()
	lock.Close()
	if err != nil {
		logFile.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{})
	stopping, ready := &atomic.Bool{}, &atomic.Bool{}
	logPath := logFile.Name()
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		if ready.Load() && !stopping.Load() {
			// Killed, or stopped by something else: said at once, and
			// to whoever watches Died, not found out later by whichever
			// statement fails first.
			err := fmt.Errorf("postgres (pid %d) exited unexpectedly (%s): %s (its log: %s)", cmd.Process.Pid, cmd.ProcessState, logTail(logPath, logStart), logPath)
			s.cfg.Logger.Error("postgres exited unexpectedly", "err", err)
			select {
			case s.died <- err:
			default:
			}
		}
		close(exited)
	}()
	s.cmd, s.exited, s.stopping = cmd, exited, stopping
	if err := s.waitReady(ctx, exited, logStart); err != nil {
		s.stopLocked()
		return err
	}
	ready.Store(true)
	select {
	case <-exited: // died between ready and now, unreported by the goroutine
		s.cmd = nil
		return fmt.Errorf("postgres exited right after start-up: %s (its log: %s)", logTail(logPath, logStart), logPath)
	default:
	}
	s.cfg.Logger.Info("postgres ready", "addr", s.cfg.Addr, "pid", cmd.Process.Pid)
	return nil
}

func (s *Server) waitReady(ctx context.Context, exited <-chan struct{}, logStart int64) error {
	admin := url.URL{Scheme: "postgres", User: url.User(User), Host: s.cfg.Addr, Path: "/postgres", RawQuery: "sslmode=disable&connect_timeout=2"}
	conn, err := sql.Open("pgx", admin.String())
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err = conn.PingContext(ctx)
		if err == nil {
			break
		}
		select {
		case <-exited:
			tail := logTail(s.cfg.Dir+".log", logStart)
			if strings.Contains(tail, noSockets) {
				tail += " (set ORDERFLOW_PG_ADDR to another address)"
			}
			if strings.Contains(tail, lockFileExists) {
				// No server started here holds the cluster's lock.
				tail += fmt.Sprintf(" (a postgres not started by this version of orderflow runs on %s: stop it and start again; if that pid is no postgres, the file is stale: remove %s)", s.cfg.Dir, filepath.Join(s.cfg.Dir, "postmaster.pid"))
			}
			return fmt.Errorf("postgres exited during start-up: %s (its log: %s.log)", tail, s.cfg.Dir)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "3D000" {
			// The server answers, but its cluster has no postgres database:
			// a cluster whose creation was cut short (by a version before
			// initdb ran aside) or one emptied by hand. Waiting cannot help.
			return fmt.Errorf("the PostgreSQL cluster in %s is incomplete (%s): remove %s and start again to create a new one", s.cfg.Dir, pgErr.Message, s.cfg.Dir)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after 60s: %w; see %s.log", err, s.cfg.Dir)
		}
	}
	var exists bool
	if err := conn.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", Database).Scan(&exists); err != nil {
		return fmt.Errorf("look up database: %w", err)
	}
	if !exists {
		if _, err := conn.ExecContext(ctx, "CREATE DATABASE "+Database); err != nil {
			return fmt.Errorf("create database: %w", err)
		}
	}
	return nil
}

// PID is the postmaster's process ID, 0 while the server is stopped. The
// benchmark reads the CPU time of the postmaster and its backends from it.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Died receives the error of a server that exited without Stop (killed,
// say), once per such exit while nobody has read the last one.
func (s *Server) Died() <-chan error { return s.died }

// Stop shuts the server down (fast shutdown: open transactions roll back)
// and waits for it to exit. It is safe to call more than once.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

func (s *Server) stopLocked() error {
	if s.cmd == nil {
		return nil
	}
	s.stopping.Store(true)
	select {
	case <-s.exited: // it had exited by itself, which was said then
		s.cmd = nil
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
	s.cfg.Logger.Info("postgres stopped", "addr", s.cfg.Addr)
	return nil
}

// noSockets is PostgreSQL's FATAL when it could bind none of its
// listen_addresses.
const noSockets = "could not create any TCP/IP sockets"

// lockFileExists is PostgreSQL's FATAL when postmaster.pid names a live
// process.
const lockFileExists = `lock file "postmaster.pid" already exists`

// refusals are the FATALs with which a server that is starting up or
// shutting down turns a client away: the answers to waitReady's probes,
// logged around the line that says why it stopped, never that line.
var refusals = []string{
	"the database system is starting up",
	"the database system is in recovery mode",
	"the database system is shutting down",
	"the database system is not yet accepting connections",
	"the database system is not accepting connections",
}

// logTail is the end of what this start wrote to the server's log (from
// offset from on): from its last FATAL or PANIC line on (a client's refusal
// aside), with the DETAIL and HINT lines after it, else its last three
// lines; before a FATAL noSockets, the last "could not bind" line, its
// cause (its port taken). That says why the server stopped, and the log
// itself may be gone once the caller cleans up.
func logTail(path string, from int64) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "its log cannot be read: " + err.Error()
	}
	return tailOf(string(data[min(from, int64(len(data))):]))
}

// tailOf is logTail's choice of lines from log.
func tailOf(log string) string {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	first := max(0, len(lines)-3)
	for i := len(lines) - 1; i >= 0; i-- {
		if (strings.Contains(lines[i], "FATAL:") || strings.Contains(lines[i], "PANIC:")) &&
			!slices.ContainsFunc(refusals, func(r string) bool { return strings.Contains(lines[i], r) }) {
			first = i
			break
		}
	}
	tail := lines[first:min(len(lines), first+6)]
	// A "could not bind" alone is a LOG line: the server goes on with the
	// addresses it could bind, and fails, if it does, for another reason.
	for i := first - 1; i >= 0 && strings.Contains(lines[first], noSockets); i-- {
		if strings.Contains(lines[i], "could not bind") {
			tail = append([]string{lines[i]}, tail...)
			break
		}
	}
	return strings.Join(tail, " / ")
}
