package devserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/common/persistence"
	"go.temporal.io/server/common/persistence/serialization"
	sqlstore "go.temporal.io/server/common/persistence/sql"
	"go.temporal.io/server/common/persistence/sql/sqlplugin"
	pgplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/resolver"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	schematool "go.temporal.io/server/tools/common/schema"
	sqltool "go.temporal.io/server/tools/sql"
)

// Persistence says where the embedded server keeps its state.
type Persistence string

const (
	// Postgres keeps the state in two databases, temporal and
	// temporal_visibility, on the PostgreSQL server Config.PostgresURL names.
	// Their schema is created and upgraded from the server module's embedded
	// schema files on every start. It is as durable as that server: with
	// fsync and synchronous_commit on (the private dev PostgreSQL) nothing
	// acknowledged is lost, not even on power loss.
	Postgres Persistence = "postgres"
	// SQLite keeps the state in one file, DataDir/temporal.db; how durable
	// it is depends on Config.SQLiteJournal and Config.SQLiteSync.
	SQLite Persistence = "sqlite"
)

// ChoosePersistence is the persistence a server on dataDir uses when asked
// for asked: asked itself, or when asked is "" the store dataDir already
// has, so that a data dir made with SQLite keeps its workflows when the
// default changes; a new data dir gets DefaultPersistence.
func ChoosePersistence(asked Persistence, dataDir string) Persistence {
	if asked != "" {
		return asked
	}
	if _, err := os.Stat(filepath.Join(dataDir, DatabaseFile)); err == nil {
		return SQLite
	}
	return DefaultPersistence
}

// Database names of the Postgres persistence, next to the database the
// PostgreSQL URL names.
const (
	PostgresDatabase           = "temporal"
	PostgresVisibilityDatabase = "temporal_visibility"
)

// SQLite journal modes and synchronous settings Config accepts. Every
// combination survives a crash of this process; they differ on an
// operating-system crash or power loss:
//   - delete + full (SQLite's own default): loses nothing acknowledged.
//   - wal + full: loses nothing acknowledged.
//   - wal + normal: may lose the last commits (never corrupts the file).
//   - delete + normal: may lose the last commits and, on some file systems,
//     corrupt the file.
const (
	JournalDelete = "delete"
	JournalWAL    = "wal"
	SyncFull      = "full"
	SyncNormal    = "normal"
)

// Defaults the server applies to a zero Config, chosen by
// BenchmarkPersistence (an order-shaped workflow, 50 at a time, on a
// 2-core machine, medians of 9 rounds): PostgreSQL with 4 shards ran
// nearly as fast as SQLite in WAL mode with synchronous=NORMAL (76.5
// against 80.0 workflows/s), which may lose the last commits on power loss,
// and faster than every SQLite mode that loses nothing acknowledged
// (WAL+FULL 67.0/s, SQLite's own DELETE+FULL 34.0/s). One shard serialises
// every workflow's commits (58.9/s); 8 shards ran no faster than 4 (77.9/s,
// within the spread of the rounds). The SQLite defaults are its fastest
// mode that loses nothing acknowledged.
const (
	DefaultPersistence   = Postgres
	DefaultSQLiteJournal = JournalWAL
	DefaultSQLiteSync    = SyncFull
	DefaultHistoryShards = 4
)

// Postgres connection pool sizes per Temporal service (frontend, history,
// matching and worker each open their own pools), small enough that the
// four of them stay far below the private PostgreSQL's max_connections.
const (
	pgMaxConns           = 10
	pgVisibilityMaxConns = 4
)

// Embedded schema directories (go.temporal.io/server/schema) of the
// Postgres persistence.
const (
	pgSchema           = "postgresql/v12/temporal"
	pgVisibilitySchema = "postgresql/v12/visibility"
)

// store is the persistence part of the server configuration.
type store struct {
	persistence config.Persistence
	// main is the default store's configuration; the namespace is
	// registered there.
	main *config.SQL
	// desc describes the store for logs and errors.
	desc string
}

// openStore creates or upgrades the configured store, settles its history
// shard count and registers the namespace.
func openStore(ctx context.Context, cfg Config, logger log.Logger) (*store, error) {
	var st *store
	var err error
	switch cfg.Persistence {
	case SQLite:
		st, err = sqliteStore(cfg)
	case Postgres:
		st, err = postgresStore(ctx, cfg, logger)
	default:
		return nil, fmt.Errorf("temporal persistence %q: want %s or %s", cfg.Persistence, Postgres, SQLite)
	}
	if err != nil {
		return nil, err
	}
	if st.persistence.NumHistoryShards, err = historyShards(ctx, st, cfg.NumHistoryShards); err != nil {
		return nil, err
	}
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, cfg.Namespace, false, nil)
	if err != nil {
		return nil, fmt.Errorf("temporal namespace config: %w", err)
	}
	// CreateNamespaces lives in the sqlite schema package but works on any
	// SQL store: it opens cfg's plugin and inserts the row unless the
	// namespace exists.
	if err := sqliteschema.CreateNamespaces(st.main, ns); err != nil {
		return nil, fmt.Errorf("register temporal namespace %q in %s: %w", cfg.Namespace, st.desc, err)
	}
	return st, nil
}

func sqliteStore(cfg Config) (*store, error) {
	journal, sync := strings.ToLower(cfg.SQLiteJournal), strings.ToLower(cfg.SQLiteSync)
	if journal != JournalDelete && journal != JournalWAL {
		return nil, fmt.Errorf("temporal sqlite journal mode %q: want %s or %s", cfg.SQLiteJournal, JournalWAL, JournalDelete)
	}
	if sync != SyncFull && sync != SyncNormal {
		return nil, fmt.Errorf("temporal sqlite synchronous %q: want %s or %s", cfg.SQLiteSync, SyncFull, SyncNormal)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create temporal data dir: %w", err)
	}
	file := filepath.Join(cfg.DataDir, DatabaseFile)
	conf := &config.SQL{
		PluginName:   sqliteplugin.PluginName,
		DatabaseName: sqliteURIPath(file),
		// Each key that is not a URI parameter becomes a PRAGMA run on every
		// connection. The plugin keeps one connection per file (SQLite
		// allows one writer; more would only queue behind it).
		ConnectAttributes: map[string]string{"mode": "rwc", "journal_mode": journal, "synchronous": sync},
	}
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		if err := sqliteschema.SetupSchema(conf); err != nil {
			return nil, fmt.Errorf("set up temporal sqlite schema in %s: %w", file, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("stat temporal database: %w", err)
	}
	st := &store{main: conf, desc: fmt.Sprintf("sqlite file %s (journal %s, synchronous %s)", file, journal, sync)}
	st.persistence.DefaultStore = "sqlite"
	st.persistence.VisibilityStore = "sqlite"
	st.persistence.DataStores = map[string]config.DataStore{"sqlite": {SQL: conf}}
	return st, nil
}

func postgresStore(ctx context.Context, cfg Config, logger log.Logger) (*store, error) {
	if cfg.PostgresURL == "" {
		return nil, errors.New("temporal persistence postgres needs a PostgreSQL URL")
	}
	u, err := url.Parse(cfg.PostgresURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("temporal persistence postgres: %q is not a postgres:// URL", redact(cfg.PostgresURL))
	}
	base, err := postgresSQLConfig(u)
	if err != nil {
		return nil, err
	}
	where := base.User + "@" + base.ConnectAddr
	if err := createDatabases(ctx, cfg.PostgresURL, where, PostgresDatabase, PostgresVisibilityDatabase); err != nil {
		return nil, err
	}
	main, vis := *base, *base
	main.DatabaseName, main.MaxConns, main.MaxIdleConns = PostgresDatabase, pgMaxConns, pgMaxConns
	vis.DatabaseName, vis.MaxConns, vis.MaxIdleConns = PostgresVisibilityDatabase, pgVisibilityMaxConns, pgVisibilityMaxConns
	for _, s := range []struct {
		conf   *config.SQL
		schema string
	}{{&main, pgSchema}, {&vis, pgVisibilitySchema}} {
		if err := migratePostgres(s.conf, s.schema, logger); err != nil {
			return nil, fmt.Errorf("temporal schema in database %s (%s): %w", s.conf.DatabaseName, where, err)
		}
	}
	st := &store{main: &main, desc: "postgres databases " + PostgresDatabase + " and " + PostgresVisibilityDatabase + " (" + where + ")"}
	st.persistence.DefaultStore = "postgres"
	st.persistence.VisibilityStore = "postgres-visibility"
	st.persistence.DataStores = map[string]config.DataStore{
		"postgres":            {SQL: &main},
		"postgres-visibility": {SQL: &vis},
	}
	return st, nil
}

// postgresSQLConfig turns a postgres:// URL into the plugin's settings:
// its query parameters (sslmode, sslrootcert, ...) become connection
// attributes, so TLS works as the URL says.
func postgresSQLConfig(u *url.URL) (*config.SQL, error) {
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return nil, fmt.Errorf("temporal persistence postgres: %q names no host (a Unix socket is not supported here)", redact(u.String()))
	}
	if port == "" {
		port = "5432"
	}
	conf := &config.SQL{
		PluginName:        pgplugin.PluginNamePGX,
		ConnectAddr:       net.JoinHostPort(host, port),
		ConnectProtocol:   "tcp",
		User:              u.User.Username(),
		ConnectAttributes: map[string]string{},
	}
	conf.Password, _ = u.User.Password()
	for k, vs := range u.Query() {
		if len(vs) > 0 {
			conf.ConnectAttributes[k] = vs[len(vs)-1]
		}
	}
	return conf, nil
}

// createDatabases creates the missing ones of names on the server adminURL
// points at, connected as its role.
func createDatabases(ctx context.Context, adminURL, where string, names ...string) error {
	db, err := sql.Open("pgx", adminURL)
	if err != nil {
		return fmt.Errorf("temporal persistence postgres (%s): %w", where, err)
	}
	defer db.Close()
	for _, name := range names {
		var exists bool
		if err := db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			return fmt.Errorf("temporal persistence postgres: look up database %s (%s): %w", name, where, err)
		}
		if exists {
			continue
		}
		if _, err := db.ExecContext(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
			return fmt.Errorf("temporal persistence postgres: create database %s (%s): %w; "+
				"the role needs the CREATEDB privilege, or create the databases %s and %s owned by it, "+
				"or set ORDERFLOW_TEMPORAL_PERSISTENCE=sqlite",
				name, where, err, PostgresDatabase, PostgresVisibilityDatabase)
		}
	}
	return nil
}

// migratePostgres brings one database to the newest schema version the
// server module embeds, the way Temporal's own temporal-sql-tool does
// (setup-schema -v 0.0, then update-schema): the first start creates the
// version tables and applies every versioned step, later starts apply only
// the steps a newer server brings.
func migratePostgres(conf *config.SQL, schemaName string, logger log.Logger) error {
	c := *conf
	conn, err := sqltool.NewConnection(&c, logger)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := schematool.NewSetupSchemaTask(conn, &schematool.SetupConfig{InitialVersion: "0.0"}, logger).Run(); err != nil {
		return fmt.Errorf("set up version tables: %w", err)
	}
	if err := schematool.NewUpdateSchemaTask(conn, &schematool.UpdateConfig{DBName: conf.DatabaseName, SchemaName: schemaName}, logger).Run(); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	return nil
}

// historyShards settles the shard count. Temporal maps every workflow to a
// shard by hashing its ID over the count the cluster was created with, so
// an existing store keeps its own: want 0 means "the stored one, or
// DefaultHistoryShards for a new store", and any other want must match.
func historyShards(ctx context.Context, st *store, want int32) (int32, error) {
	if want < 0 {
		return 0, fmt.Errorf("temporal history shards %d: want 1 or more", want)
	}
	stored, err := storedHistoryShards(ctx, st.main)
	if err != nil {
		return 0, fmt.Errorf("read the history shard count of %s: %w", st.desc, err)
	}
	switch {
	case stored == 0 && want == 0:
		return DefaultHistoryShards, nil
	case stored == 0:
		return want, nil
	case want == 0 || want == stored:
		return stored, nil
	default:
		return 0, fmt.Errorf("%s was created with %d history shards and Temporal cannot change that: "+
			"ask for %d (or leave ORDERFLOW_TEMPORAL_SHARDS unset to keep the stored count), "+
			"or start from a new store to get %d", st.desc, stored, stored, want)
	}
}

// storedHistoryShards reads the shard count from the cluster metadata the
// server wrote on its first start; 0 when it never started on this store.
func storedHistoryShards(ctx context.Context, conf *config.SQL) (int32, error) {
	db, err := sqlstore.NewSQLDB(sqlplugin.DbKindMain, conf, resolver.NewNoopResolver(), log.NewNoopLogger(), metrics.NoopMetricsHandler)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	row, err := db.GetClusterMetadata(ctx, &sqlplugin.ClusterMetadataFilter{ClusterName: clusterName})
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	md, err := serialization.NewSerializer().DeserializeClusterMetadata(persistence.NewDataBlob(row.Data, row.DataEncoding))
	if err != nil {
		return 0, err
	}
	return md.GetHistoryShardCount(), nil
}

// sqliteURIPath escapes path for the file: URI the plugin opens it with
// ("file:" + path + "?" + pragmas), where SQLite ends the path at ? or #
// and decodes %HH: a data dir named like "c#/x" must not open "c".
func sqliteURIPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// redact hides a URL's password.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
