package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// PDOOptions configures a PDOStore after Symfony's PdoSessionHandler options
// (db_table, db_id_col, db_data_col, db_lifetime_col, db_time_col).
//
// The same options serve OpenMySQL and OpenPostgres.
type PDOOptions struct {
	// DSN is, for OpenMySQL, a go-sql-driver/mysql DSN, e.g.
	// "user:pw@tcp(127.0.0.1:3306)/app"; for OpenPostgres, a pgx connection
	// string, URL ("postgres://user:pw@host:5432/app") or keyword/value
	// ("host=... dbname=app"). A user with only SELECT on the sessions table
	// is recommended: the store never needs more.
	DSN string
	// Table is the sessions table, optionally "schema.table"; default
	// "sessions".
	Table string
	// IDColumn, DataColumn, LifetimeColumn and TimeColumn default to
	// Symfony's sess_id, sess_data, sess_lifetime and sess_time.
	IDColumn, DataColumn, LifetimeColumn, TimeColumn string
	// MaxOpenConns bounds the connection pool; default 16.
	MaxOpenConns int
	// LookupTimeout bounds each Read and Ping, including connecting;
	// default 2s.
	LookupTimeout time.Duration
	// MaxSize bounds the session data a Read returns; bigger sessions fail
	// with ErrTooLarge and their data is not even sent by the server.
	// 0 means DefaultMaxSize.
	MaxSize int64
	// MaxConcurrent bounds the lookups in flight; a lookup that finds none
	// free for BusyWait fails with ErrBusy (wrapped with ErrUnavailable),
	// so a slow database sheds load instead of queueing handshakes.
	// 0 means twice MaxOpenConns.
	MaxConcurrent int
	// BusyWait is how long a lookup waits for a free slot; 0 means
	// DefaultBusyWait.
	BusyWait time.Duration
	// Observer, if set, is told about every lookup.
	Observer Observer
}

// withDefaults fills in the defaults and checks the numbers; kind names the
// store in errors.
func (o PDOOptions) withDefaults(kind string) (PDOOptions, error) {
	orDefault(&o.Table, DefaultPDOTable)
	orDefault(&o.IDColumn, DefaultPDOIDColumn)
	orDefault(&o.DataColumn, DefaultPDODataColumn)
	orDefault(&o.LifetimeColumn, DefaultPDOLifetimeColumn)
	orDefault(&o.TimeColumn, DefaultPDOTimeColumn)
	if o.MaxOpenConns < 0 || o.LookupTimeout < 0 || o.MaxSize < 0 || o.MaxConcurrent < 0 || o.BusyWait < 0 {
		return o, fmt.Errorf("%s session store: negative MaxOpenConns, LookupTimeout, MaxSize, MaxConcurrent or BusyWait", kind)
	}
	orDefault(&o.MaxOpenConns, DefaultPDOMaxOpenConns)
	orDefault(&o.LookupTimeout, DefaultPDOLookupTimeout)
	orDefault(&o.MaxSize, DefaultMaxSize)
	orDefault(&o.MaxConcurrent, 2*o.MaxOpenConns)
	return o, nil
}

// pdoBatchSizes are the numbers of ids per batched SELECT: a batch is cut
// into chunks of the largest size, and the last chunk is padded (by
// repeating an id, harmless in IN (...)) to the smallest size that holds it,
// so only these few statements are ever prepared.
var pdoBatchSizes = [...]int{8, 64, 512}

// batchSize returns the smallest of pdoBatchSizes that holds n ids (n at most
// the largest).
func batchSize(n int) int {
	for _, b := range pdoBatchSizes {
		if n <= b {
			return b
		}
	}
	return pdoBatchSizes[len(pdoBatchSizes)-1]
}

// judgeRow applies PdoSessionHandler::doRead's rules to one row: expiry =
// sess_lifetime, plus sess_time when sess_lifetime <= MAX_LIFETIME (a pre-4.4
// row); expired iff expiry < now. An oversized row (its data not sent: nil
// data, length over maxSize) is ErrTooLarge; empty data is no session.
func judgeRow(data []byte, length, lifetime, modified, now, maxSize int64) ReadResult {
	expiry := lifetime
	if expiry <= symfonyMaxLifetime {
		expiry += modified
	}
	switch {
	case expiry < now:
		return ReadResult{Err: fmt.Errorf("read session: %w", ErrExpired)}
	case length > maxSize:
		return ReadResult{Err: fmt.Errorf("read session: %d bytes, limit %d: %w", length, maxSize, ErrTooLarge)}
	case len(data) == 0:
		// Symfony starts a session with an empty row (lock_mode
		// transactional) and PHP treats empty data as no session.
		return ReadResult{Err: fmt.Errorf("read session: empty data: %w", ErrNotFound)}
	}
	return ReadResult{Data: data}
}

// Defaults for PDOOptions, the same as Symfony's PdoSessionHandler.
const (
	DefaultPDOTable          = "sessions"
	DefaultPDOIDColumn       = "sess_id"
	DefaultPDODataColumn     = "sess_data"
	DefaultPDOLifetimeColumn = "sess_lifetime"
	DefaultPDOTimeColumn     = "sess_time"
	DefaultPDOMaxOpenConns   = 16
	DefaultPDOLookupTimeout  = 2 * time.Second
)

// Pool tuning that is not worth an option. Idle connections are kept so a
// burst of handshakes does not pay a connect each, but shed after a minute so
// many gateway replicas do not pin MySQL connections; the lifetime stays well
// below MySQL's wait_timeout and typical proxy idle limits.
const (
	pdoConnMaxLifetime = 5 * time.Minute
	pdoConnMaxIdleTime = time.Minute
)

// symfonyMaxLifetime is PdoSessionHandler::MAX_LIFETIME (10 years in
// seconds). Since Symfony 4.4 sess_lifetime holds the expiry timestamp;
// rows written before hold a lifetime in seconds, which is at most this, and
// their expiry is sess_lifetime + sess_time.
const symfonyMaxLifetime = 315576000

// PDOStore reads sessions written by Symfony's PdoSessionHandler to MySQL or
// MariaDB.
//
// It runs one plain SELECT in autocommit mode per lookup. InnoDB serves that
// as a consistent non-locking read under every isolation level, so it never
// waits for, nor blocks, a PHP request holding the row with SELECT ... FOR
// UPDATE (lock_mode LOCK_TRANSACTIONAL) or GET_LOCK (LOCK_ADVISORY); it sees
// the last committed session data. Both BLOB (64 KiB) and MEDIUMBLOB data
// columns work.
type PDOStore struct {
	sqlStore // batchQuery is a fmt pattern: %s is the list of placeholders
	db       *sql.DB

	// The selects are prepared once, lazily, so that the store can be
	// opened while the database is still down (the gateway then answers
	// 503 and its readiness probe fails) and recovers by itself.
	stmt  atomic.Pointer[sql.Stmt]
	mu    sync.Mutex // serializes preparing and Close (which sets closed)
	batch map[int]*sql.Stmt
}

var _ SessionStore = (*PDOStore)(nil)

// sqlIdentifier is what a configured table or column name may be: plain
// letters, digits and underscores, which need no escaping inside backticks
// or double quotes.
var sqlIdentifier = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)

// quoteIdentifier validates name (optionally "schema.name" when qualified is
// true) and returns it quoted with q (a backtick for MySQL, a double quote
// for PostgreSQL). Names come from configuration, but are still never
// interpolated unchecked into SQL.
func quoteIdentifier(name string, qualified bool, q string) (string, error) {
	parts := []string{name}
	if qualified {
		if schema, table, ok := strings.Cut(name, "."); ok {
			parts = []string{schema, table}
		}
	}
	for i, p := range parts {
		if !sqlIdentifier.MatchString(p) {
			return "", fmt.Errorf("invalid SQL identifier %q: want 1-64 letters, digits or underscores", name)
		}
		parts[i] = q + p + q
	}
	return strings.Join(parts, "."), nil
}

// quoteNames validates and quotes the table and the four columns.
func quoteNames(o PDOOptions, q string) (table string, cols [4]string, err error) {
	if table, err = quoteIdentifier(o.Table, true, q); err != nil {
		return "", cols, fmt.Errorf("table: %w", err)
	}
	for i, c := range []string{o.IDColumn, o.DataColumn, o.LifetimeColumn, o.TimeColumn} {
		if cols[i], err = quoteIdentifier(c, false, q); err != nil {
			return "", cols, fmt.Errorf("column: %w", err)
		}
	}
	return table, cols, nil
}

// OpenMySQL validates the options and opens a MySQL/MariaDB session store.
// It does not connect: use Ping to check the database.
func OpenMySQL(o PDOOptions) (*PDOStore, error) {
	cfg, err := mysql.ParseDSN(o.DSN)
	if err != nil {
		// The driver's DSN errors do not echo the password.
		return nil, fmt.Errorf("mysql session store: %w", err)
	}
	s := &PDOStore{batch: make(map[int]*sql.Stmt)}
	if o, err = s.open(mysqlDialect, o); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		// Dial timeout; the per-lookup context bounds it anyway, this
		// also covers connections opened outside a lookup.
		cfg.Timeout = o.LookupTimeout
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql session store: %w", err)
	}
	s.db = sql.OpenDB(connector)
	s.db.SetMaxOpenConns(o.MaxOpenConns)
	s.db.SetMaxIdleConns(o.MaxOpenConns)
	s.db.SetConnMaxLifetime(pdoConnMaxLifetime)
	s.db.SetConnMaxIdleTime(pdoConnMaxIdleTime)
	return s, nil
}

// prepared returns the prepared select, preparing it on first use.
func (s *PDOStore) prepared(ctx context.Context) (*sql.Stmt, error) {
	if st := s.stmt.Load(); st != nil {
		return st, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if st := s.stmt.Load(); st != nil {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, s.query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	s.stmt.Store(st)
	return st, nil
}

// preparedBatch returns the prepared batch select for n ids (one of
// pdoBatchSizes), preparing it on first use.
func (s *PDOStore) preparedBatch(ctx context.Context, n int) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if st := s.batch[n]; st != nil {
		return st, nil
	}
	marks := strings.Repeat("?,", n)
	st, err := s.db.PrepareContext(ctx, fmt.Sprintf(s.batchQuery, marks[:len(marks)-1]))
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	s.batch[n] = st
	return st, nil
}

// Read looks the session up the way PdoSessionHandler::doRead does, minus
// its locking: no row or empty data is ErrNotFound, and a row whose expiry
// (sess_lifetime, plus sess_time for pre-4.4 rows) is before now is
// ErrExpired. Database errors and timeouts are ErrUnavailable.
func (s *PDOStore) Read(ctx context.Context, id string) ([]byte, error) {
	return s.read(ctx, id, sql.ErrNoRows, func(ctx context.Context, r *sessionRow) error {
		st, err := s.prepared(ctx)
		if err != nil {
			return err
		}
		return st.QueryRowContext(ctx, s.maxSize, id).Scan(&r.data, &r.length, &r.lifetime, &r.modified)
	})
}

// ReadMany looks up to 512 sessions up per SELECT ... WHERE id IN (...),
// judging each row as Read does; ids without a row are ErrNotFound.
func (s *PDOStore) ReadMany(ctx context.Context, ids []string) (map[string]ReadResult, error) {
	max := pdoBatchSizes[len(pdoBatchSizes)-1]
	var args []any // made by the first chunk, reused by the others
	return s.readMany(ctx, ids, max, func(ctx context.Context, chunk []string, out map[string]ReadResult, now int64) error {
		n := batchSize(len(chunk))
		st, err := s.preparedBatch(ctx, n)
		if err != nil {
			return err
		}
		if args == nil {
			args = make([]any, 0, 1+max)
		}
		args = append(args[:0], s.maxSize)
		for i := 0; i < n; i++ {
			args = append(args, chunk[min(i, len(chunk)-1)])
		}
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		return s.judgeRows(rows, out, now)
	})
}

// Ping checks that the database answers within the lookup timeout.
func (s *PDOStore) Ping(ctx context.Context) error {
	return s.ping(ctx, s.db.PingContext)
}

// Close closes the prepared statements and the connection pool.
func (s *PDOStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	var errs []error
	if st := s.stmt.Swap(nil); st != nil {
		errs = append(errs, st.Close())
	}
	for _, st := range s.batch {
		errs = append(errs, st.Close())
	}
	errs = append(errs, s.db.Close())
	return errors.Join(errs...)
}
