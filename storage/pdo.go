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
type PDOOptions struct {
	// DSN is a go-sql-driver/mysql DSN, e.g. "user:pw@tcp(127.0.0.1:3306)/app".
	// A user with only SELECT on the sessions table is recommended: the
	// store never needs more.
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
// the last committed session data.
type PDOStore struct {
	db            *sql.DB
	query         string
	lookupTimeout time.Duration
	maxSize       int64
	now           func() time.Time // injectable clock for tests

	// The select is prepared once, lazily, so that the store can be opened
	// while the database is still down (the gateway then answers 503 and
	// its readiness probe fails) and recovers by itself.
	stmt   atomic.Pointer[sql.Stmt]
	mu     sync.Mutex // serializes preparing and Close
	closed bool
}

var _ SessionStore = (*PDOStore)(nil)

// sqlIdentifier is what a configured table or column name may be: plain
// letters, digits and underscores, which need no escaping inside backticks.
var sqlIdentifier = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)

// quoteIdentifier validates name (optionally "schema.name" when qualified is
// true) and returns it backtick-quoted. Names come from configuration, but are
// still never interpolated unchecked into SQL.
func quoteIdentifier(name string, qualified bool) (string, error) {
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
		parts[i] = "`" + p + "`"
	}
	return strings.Join(parts, "."), nil
}

// OpenMySQL validates the options and opens a MySQL/MariaDB session store.
// It does not connect: use Ping to check the database.
func OpenMySQL(o PDOOptions) (*PDOStore, error) {
	cfg, err := mysql.ParseDSN(o.DSN)
	if err != nil {
		// The driver's DSN errors do not echo the password.
		return nil, fmt.Errorf("mysql session store: %w", err)
	}
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&o.Table, DefaultPDOTable)
	def(&o.IDColumn, DefaultPDOIDColumn)
	def(&o.DataColumn, DefaultPDODataColumn)
	def(&o.LifetimeColumn, DefaultPDOLifetimeColumn)
	def(&o.TimeColumn, DefaultPDOTimeColumn)
	if o.MaxOpenConns < 0 || o.LookupTimeout < 0 || o.MaxSize < 0 {
		return nil, errors.New("mysql session store: negative MaxOpenConns, LookupTimeout or MaxSize")
	}
	if o.MaxOpenConns == 0 {
		o.MaxOpenConns = DefaultPDOMaxOpenConns
	}
	if o.LookupTimeout == 0 {
		o.LookupTimeout = DefaultPDOLookupTimeout
	}
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}

	table, err := quoteIdentifier(o.Table, true)
	if err != nil {
		return nil, fmt.Errorf("mysql session store: table: %w", err)
	}
	var cols [4]string
	for i, c := range []string{o.IDColumn, o.DataColumn, o.LifetimeColumn, o.TimeColumn} {
		if cols[i], err = quoteIdentifier(c, false); err != nil {
			return nil, fmt.Errorf("mysql session store: column: %w", err)
		}
	}
	id, data, lifetime, tm := cols[0], cols[1], cols[2], cols[3]
	// The data is only sent when it fits MaxSize; LENGTH tells an
	// oversized session (data NULL, length > max) from an empty one.
	query := fmt.Sprintf(
		"SELECT CASE WHEN LENGTH(%[2]s) <= ? THEN %[2]s END, LENGTH(%[2]s), %[3]s, %[4]s FROM %[5]s WHERE %[1]s = ?",
		id, data, lifetime, tm, table)

	if cfg.Timeout == 0 {
		// Dial timeout; the per-lookup context bounds it anyway, this
		// also covers connections opened outside a lookup.
		cfg.Timeout = o.LookupTimeout
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql session store: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(o.MaxOpenConns)
	db.SetMaxIdleConns(o.MaxOpenConns)
	db.SetConnMaxLifetime(pdoConnMaxLifetime)
	db.SetConnMaxIdleTime(pdoConnMaxIdleTime)
	return &PDOStore{
		db:            db,
		query:         query,
		lookupTimeout: o.LookupTimeout,
		maxSize:       o.MaxSize,
		now:           time.Now,
	}, nil
}

// prepared returns the prepared select, preparing it on first use.
func (s *PDOStore) prepared(ctx context.Context) (*sql.Stmt, error) {
	if st := s.stmt.Load(); st != nil {
		return st, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
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

// Read looks the session up the way PdoSessionHandler::doRead does, minus
// its locking: no row or empty data is ErrNotFound, and a row whose expiry
// (sess_lifetime, plus sess_time for pre-4.4 rows) is before now is
// ErrExpired. Database errors and timeouts are ErrUnavailable.
func (s *PDOStore) Read(ctx context.Context, id string) ([]byte, error) {
	if !ValidSessionID(id) {
		return nil, fmt.Errorf("read session: %w", ErrInvalidID)
	}
	ctx, cancel := context.WithTimeout(ctx, s.lookupTimeout)
	defer cancel()
	st, err := s.prepared(ctx)
	if err != nil {
		return nil, unavailable("read session", err)
	}
	var (
		data               []byte
		length             sql.NullInt64
		lifetime, modified sql.NullInt64 // NULL reads as 0, as PHP's (int) cast would
	)
	err = st.QueryRowContext(ctx, s.maxSize, id).Scan(&data, &length, &lifetime, &modified)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("read session: %w", ErrNotFound)
	case err != nil:
		return nil, unavailable("read session", err)
	}
	expiry := lifetime.Int64
	if expiry <= symfonyMaxLifetime {
		expiry += modified.Int64
	}
	if expiry < s.now().Unix() {
		return nil, fmt.Errorf("read session: %w", ErrExpired)
	}
	if length.Int64 > s.maxSize {
		return nil, fmt.Errorf("read session: %d bytes, limit %d: %w", length.Int64, s.maxSize, ErrTooLarge)
	}
	if len(data) == 0 {
		// Symfony starts a session with an empty row (lock_mode
		// transactional) and PHP treats empty data as no session.
		return nil, fmt.Errorf("read session: empty data: %w", ErrNotFound)
	}
	return data, nil
}

// Ping checks that the database answers within the lookup timeout.
func (s *PDOStore) Ping(ctx context.Context) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return unavailable("ping", ErrClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, s.lookupTimeout)
	defer cancel()
	if err := s.db.PingContext(ctx); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close closes the prepared statement and the connection pool.
func (s *PDOStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if st := s.stmt.Swap(nil); st != nil {
		errs = append(errs, st.Close())
	}
	errs = append(errs, s.db.Close())
	return errors.Join(errs...)
}
