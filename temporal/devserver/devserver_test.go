package devserver_test

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	pgplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	pgschema "go.temporal.io/server/schema/postgresql/v12"
	schematool "go.temporal.io/server/tools/common/schema"
	sqltool "go.temporal.io/server/tools/sql"

	"github.com/orderflow/orderflow/temporal/devserver"
)

const taskQueue = "devserver-test"

// greet completes after one regular activity, so its history holds
// activity events as well as workflow ones.
func greet(ctx workflow.Context, name string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var s string
	err := workflow.ExecuteActivity(ctx, compose, name).Get(ctx, &s)
	return s, err
}

func compose(_ context.Context, name string) (string, error) { return "Hello, " + name + "!", nil }

// waitForGo stays open until it gets the signal "go".
func waitForGo(ctx workflow.Context) (string, error) {
	var v string
	workflow.GetSignalChannel(ctx, "go").Receive(ctx, &v)
	return "got " + v, nil
}

// runWorker runs a worker for greet and waitForGo until the test ends or
// the returned stop is called.
func runWorker(t *testing.T, c client.Client) (stop func()) {
	t.Helper()
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflow(greet)
	w.RegisterWorkflow(waitForGo)
	w.RegisterActivity(compose)
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			w.Stop()
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestRestartKeepsWorkflows completes one workflow and leaves another
// waiting, stops the server and starts it again on the same store: the
// completed one is there with its history and result, visibility lists
// both, and the waiting one resumes and completes.
func TestRestartKeepsWorkflows(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(t *testing.T) devserver.Config
	}{
		{"sqlite delete+full", func(t *testing.T) devserver.Config {
			return devserver.Config{Persistence: devserver.SQLite, DataDir: t.TempDir(), SQLiteJournal: devserver.JournalDelete, SQLiteSync: devserver.SyncFull}
		}},
		{"sqlite wal+normal", func(t *testing.T) devserver.Config {
			return devserver.Config{Persistence: devserver.SQLite, DataDir: t.TempDir(), SQLiteJournal: devserver.JournalWAL, SQLiteSync: devserver.SyncNormal}
		}},
		{"postgres", func(t *testing.T) devserver.Config {
			return devserver.Config{Persistence: devserver.Postgres, PostgresURL: startPostgres(t, false).URL()}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			srv := startServer(t, cfg)
			c := dial(t, srv)
			stopWorker := runWorker(t, c)
			done, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "done", TaskQueue: taskQueue}, greet, "Ada")
			if err != nil {
				t.Fatalf("start greet: %v", err)
			}
			if err := done.Get(ctx, nil); err != nil {
				t.Fatalf("greet: %v", err)
			}
			waiting, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "waiting", TaskQueue: taskQueue}, waitForGo)
			if err != nil {
				t.Fatalf("start waitForGo: %v", err)
			}
			waitForHistory(ctx, t, c, "waiting", enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
			stopWorker()
			c.Close()
			srv.Stop()

			srv = startServer(t, cfg)
			c = dial(t, srv)
			desc, err := c.DescribeWorkflowExecution(ctx, "done", "")
			if err != nil {
				t.Fatalf("describe done after restart: %v", err)
			}
			if got := desc.GetWorkflowExecutionInfo().GetStatus(); got != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				t.Errorf("done after restart: status %v; want COMPLETED", got)
			}
			if got := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(); got != done.GetRunID() {
				t.Errorf("done after restart: run id %s; want %s", got, done.GetRunID())
			}
			types := history(ctx, t, c, "done")
			for _, want := range []enumspb.EventType{
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
				enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
			} {
				if !slices.Contains(types, want) {
					t.Errorf("history of done after restart lacks %v; has %v", want, types)
				}
			}
			var result string
			if err := c.GetWorkflow(ctx, "done", "").Get(ctx, &result); err != nil || result != "Hello, Ada!" {
				t.Errorf("result of done after restart = %q, %v; want %q", result, err, "Hello, Ada!")
			}
			// Visibility is a store of its own (a database of its own on
			// Postgres); the Web UI lists workflows from it.
			wantListed := []string{"done Completed", "waiting Running"}
			var listed []string
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{})
				if err != nil {
					t.Fatalf("list workflows after restart: %v", err)
				}
				listed = listed[:0]
				for _, e := range resp.GetExecutions() {
					listed = append(listed, e.GetExecution().GetWorkflowId()+" "+e.GetStatus().String())
				}
				slices.Sort(listed)
				if slices.Equal(listed, wantListed) || time.Now().After(deadline) {
					break
				}
			}
			if !slices.Equal(listed, wantListed) {
				t.Errorf("visibility after restart lists %q; want %q", listed, wantListed)
			}

			runWorker(t, c)
			if err := c.SignalWorkflow(ctx, "waiting", "", "go", "now"); err != nil {
				t.Fatalf("signal waiting after restart: %v", err)
			}
			if err := c.GetWorkflow(ctx, "waiting", waiting.GetRunID()).Get(ctx, &result); err != nil || result != "got now" {
				t.Errorf("waiting after restart and signal: %q, %v; want %q", result, err, "got now")
			}
		})
	}
}

// TestHistoryShards checks that a new store gets the asked-for shard count,
// that an existing store keeps its own when none is asked for, and that
// asking for another one fails and names both counts.
func TestHistoryShards(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(t *testing.T) devserver.Config
	}{
		{"sqlite", func(t *testing.T) devserver.Config {
			return devserver.Config{Persistence: devserver.SQLite, DataDir: t.TempDir()}
		}},
		{"postgres", func(t *testing.T) devserver.Config {
			return devserver.Config{Persistence: devserver.Postgres, PostgresURL: startPostgres(t, false).URL()}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg(t)
			cfg.NumHistoryShards = 2
			srv := startServer(t, cfg)
			if got := shardCount(t, srv); got != 2 {
				t.Errorf("new store with 2 shards asked: server has %d", got)
			}
			srv.Stop()

			cfg.NumHistoryShards = 3
			if _, err := tryStart(t, cfg); err == nil || !strings.Contains(err.Error(), "created with 2 history shards") {
				t.Errorf("restart asking for 3 shards on a 2-shard store: err = %v; want one saying it was created with 2", err)
			}

			cfg.NumHistoryShards = 0
			srv = startServer(t, cfg)
			if got := shardCount(t, srv); got != 2 {
				t.Errorf("restart with no shard count asked: server has %d; want the stored 2", got)
			}
		})
	}

	t.Run("new store default", func(t *testing.T) {
		srv := startServer(t, devserver.Config{Persistence: devserver.SQLite, DataDir: t.TempDir()})
		if got := shardCount(t, srv); got != devserver.DefaultHistoryShards {
			t.Errorf("new store, no shard count asked: server has %d; want DefaultHistoryShards %d", got, devserver.DefaultHistoryShards)
		}
	})
}

// TestSQLiteWAL checks that the journal setting reaches the file: a WAL
// database says so in its header (bytes 18 and 19 are 2).
func TestSQLiteWAL(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, devserver.Config{Persistence: devserver.SQLite, DataDir: dir, SQLiteJournal: devserver.JournalWAL, SQLiteSync: devserver.SyncNormal})
	srv.Stop()
	f, err := os.Open(filepath.Join(dir, devserver.DatabaseFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	header := make([]byte, 20)
	if _, err := f.ReadAt(header, 0); err != nil {
		t.Fatal(err)
	}
	if header[18] != 2 || header[19] != 2 {
		t.Errorf("sqlite header read/write versions = %d/%d; want 2/2 (WAL)", header[18], header[19])
	}
}

// TestSQLitePathWithURICharacters starts on a data dir whose name holds
// the characters a file: URI treats specially: the file is made there, and
// a restart finds the workflow in it.
func TestSQLitePathWithURICharacters(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "a#b?c%20d")
	cfg := devserver.Config{Persistence: devserver.SQLite, DataDir: dir}
	srv := startServer(t, cfg)
	c := dial(t, srv)
	runWorker(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "uri", TaskQueue: taskQueue}, greet, "Dee")
	if err != nil {
		t.Fatalf("start greet: %v", err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("greet: %v", err)
	}
	srv.Stop()
	if _, err := os.Stat(filepath.Join(dir, devserver.DatabaseFile)); err != nil {
		t.Errorf("sqlite file in %q: %v", dir, err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("%s holds %q; want only the data dir", parent, names)
	}
	srv = startServer(t, cfg)
	if _, err := dial(t, srv).DescribeWorkflowExecution(ctx, "uri", run.GetRunID()); err != nil {
		t.Errorf("describe after restart: %v", err)
	}
}

// TestChoosePersistence checks that an unset persistence keeps the store a
// data dir has, and that a set one wins.
func TestChoosePersistence(t *testing.T) {
	withSQLite := t.TempDir()
	if err := os.WriteFile(filepath.Join(withSQLite, devserver.DatabaseFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		asked   devserver.Persistence
		dataDir string
		want    devserver.Persistence
	}{
		{"unset, new data dir", "", t.TempDir(), devserver.DefaultPersistence},
		{"unset, data dir with a sqlite store", "", withSQLite, devserver.SQLite},
		{"postgres asked, data dir with a sqlite store", devserver.Postgres, withSQLite, devserver.Postgres},
		{"sqlite asked, new data dir", devserver.SQLite, t.TempDir(), devserver.SQLite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := devserver.ChoosePersistence(tt.asked, tt.dataDir); got != tt.want {
				t.Errorf("ChoosePersistence(%q, ...) = %q; want %q", tt.asked, got, tt.want)
			}
		})
	}
}

// TestInvalidConfig checks that a bad setting fails Start with a message
// naming it.
func TestInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  devserver.Config
		want string
	}{
		{"persistence", devserver.Config{Persistence: "mysql"}, `persistence "mysql"`},
		{"journal", devserver.Config{Persistence: devserver.SQLite, SQLiteJournal: "memory"}, `journal mode "memory"`},
		{"sync", devserver.Config{Persistence: devserver.SQLite, SQLiteSync: "off"}, `synchronous "off"`},
		{"shards", devserver.Config{Persistence: devserver.SQLite, NumHistoryShards: -1}, "history shards -1"},
		{"postgres without url", devserver.Config{Persistence: devserver.Postgres}, "needs a PostgreSQL URL"},
		{"postgres bad url", devserver.Config{Persistence: devserver.Postgres, PostgresURL: "mysql://x"}, "is not a postgres:// URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.DataDir = t.TempDir()
			_, err := tryStart(t, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start = %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestPostgresRoleWithoutCreateDB is the external-database case: a role
// that may not create databases gets an error saying what to do, and once
// the databases exist and are its own, the server starts on them.
func TestPostgresRoleWithoutCreateDB(t *testing.T) {
	pg := startPostgres(t, false)
	admin := openDB(t, pg.URL())
	if _, err := admin.Exec("CREATE ROLE limited LOGIN NOCREATEDB"); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User("limited")
	cfg := devserver.Config{Persistence: devserver.Postgres, PostgresURL: u.String()}

	_, err = tryStart(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "CREATEDB") || !strings.Contains(err.Error(), "limited@") {
		t.Fatalf("Start as a role without CREATEDB = %v; want an error naming the role and CREATEDB", err)
	}
	for _, name := range []string{devserver.PostgresDatabase, devserver.PostgresVisibilityDatabase} {
		if _, err := admin.Exec("CREATE DATABASE " + name + " OWNER limited"); err != nil {
			t.Fatal(err)
		}
	}
	srv := startServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := dial(t, srv)
	runWorker(t, c)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "limited", TaskQueue: taskQueue}, greet, "Bob")
	if err != nil {
		t.Fatalf("start greet: %v", err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("greet: %v", err)
	}
}

// TestPostgresSchemaUpgrade starts on databases left at older schema
// versions, as a store made by an older server would be: Start brings them
// to the versions this server embeds, and workflows run on them.
func TestPostgresSchemaUpgrade(t *testing.T) {
	pg := startPostgres(t, false)
	admin := openDB(t, pg.URL())
	u, err := url.Parse(pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	for _, old := range []struct{ db, schema, version string }{
		{devserver.PostgresDatabase, "postgresql/v12/temporal", "1.17"},
		{devserver.PostgresVisibilityDatabase, "postgresql/v12/visibility", "1.10"},
	} {
		if _, err := admin.Exec("CREATE DATABASE " + old.db); err != nil {
			t.Fatal(err)
		}
		conn, err := sqltool.NewConnection(&config.SQL{
			PluginName: pgplugin.PluginNamePGX, ConnectAddr: u.Host, ConnectProtocol: "tcp",
			User: u.User.Username(), DatabaseName: old.db, ConnectAttributes: map[string]string{"sslmode": "disable"},
		}, log.NewNoopLogger())
		if err != nil {
			t.Fatal(err)
		}
		if err := schematool.NewSetupSchemaTask(conn, &schematool.SetupConfig{InitialVersion: "0.0"}, log.NewNoopLogger()).Run(); err != nil {
			t.Fatal(err)
		}
		if err := schematool.NewUpdateSchemaTask(conn, &schematool.UpdateConfig{DBName: old.db, SchemaName: old.schema, TargetVersion: old.version}, log.NewNoopLogger()).Run(); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if got := schemaVersion(t, pg.URL(), old.db); got != old.version {
			t.Fatalf("set-up old schema of %s: version %s; want %s", old.db, got, old.version)
		}
	}

	srv := startServer(t, devserver.Config{Persistence: devserver.Postgres, PostgresURL: pg.URL()})
	for db, want := range map[string]string{
		devserver.PostgresDatabase:           pgschema.Version,
		devserver.PostgresVisibilityDatabase: pgschema.VisibilityVersion,
	} {
		if got := schemaVersion(t, pg.URL(), db); got != want {
			t.Errorf("schema version of %s after start = %s; want %s", db, got, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := dial(t, srv)
	runWorker(t, c)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "upgraded", TaskQueue: taskQueue}, greet, "Cy")
	if err != nil {
		t.Fatalf("start greet: %v", err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("greet on the upgraded schema: %v", err)
	}
}

// TestPostgresRestartUnderServer stops the PostgreSQL a running server
// persists to and starts it again: workflows run again afterwards, without
// restarting the server (tests stop the stack's PostgreSQL this way).
func TestPostgresRestartUnderServer(t *testing.T) {
	pg := startPostgres(t, false)
	srv := startServer(t, devserver.Config{Persistence: devserver.Postgres, PostgresURL: pg.URL()})
	c := dial(t, srv)
	runWorker(t, c)
	greetOnce := func(id string, limit time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: taskQueue}, greet, id)
		if err != nil {
			return err
		}
		return run.Get(ctx, nil)
	}
	if err := greetOnce("before", 30*time.Second); err != nil {
		t.Fatalf("greet before the restart: %v", err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := greetOnce("after", 2*time.Minute); err != nil {
		t.Fatalf("greet after postgres restarted: %v", err)
	}
	t.Logf("first workflow after the postgres restart completed in %s", time.Since(began).Round(time.Millisecond))
}

func shardCount(t *testing.T, srv *devserver.Server) int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := dial(t, srv).WorkflowService().GetClusterInfo(ctx, &workflowservice.GetClusterInfoRequest{})
	if err != nil {
		t.Fatalf("cluster info: %v", err)
	}
	return resp.GetHistoryShardCount()
}

func history(ctx context.Context, t *testing.T, c client.Client, id string) []enumspb.EventType {
	t.Helper()
	var types []enumspb.EventType
	iter := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", id, err)
		}
		types = append(types, ev.GetEventType())
	}
	return types
}

// waitForHistory waits until id's history holds an event of type want.
func waitForHistory(ctx context.Context, t *testing.T, c client.Client, id string, want enumspb.EventType) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if slices.Contains(history(ctx, t, c, id), want) {
			return
		}
	}
	t.Fatalf("history of %s has no %v after 30s", id, want)
}

func openDB(t *testing.T, rawURL string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", rawURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// schemaVersion reads the version Temporal's schema tool recorded in db.
func schemaVersion(t *testing.T, serverURL, db string) string {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	var v string
	err = openDB(t, u.String()).QueryRow("SELECT curr_version FROM schema_version WHERE db_name = $1", db).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatalf("schema version of %s: %v", db, err)
	}
	return v
}
