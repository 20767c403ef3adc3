package storage

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresStore reads sessions written by Symfony's PdoSessionHandler to
// PostgreSQL (its createTable(): sess_id VARCHAR(128), sess_data BYTEA,
// sess_lifetime and sess_time INTEGER), through a pgx connection pool.
//
// Every lookup is one plain SELECT outside any explicit transaction.
// PostgreSQL's MVCC serves it from a snapshot without taking or waiting for
// row locks, so a PHP request holding the row with SELECT ... FOR UPDATE
// (lock_mode LOCK_TRANSACTIONAL) or pg_advisory_lock (LOCK_ADVISORY) neither
// blocks it nor is blocked by it; it sees the last committed session data.
type PostgresStore struct {
	pool          *pgxpool.Pool
	query         string
	batchQuery    string
	lookupTimeout time.Duration
	maxSize       int64
	now           func() time.Time // injectable clock for tests
	lim           *limiter
	closed        atomic.Bool
}

var _ SessionStore = (*PostgresStore)(nil)

// pgBatchMax is how many ids one batched select asks for at most.
const pgBatchMax = 512

// OpenPostgres validates the options and opens a PostgreSQL session store
// with a pool of at most MaxOpenConns connections. It does not connect: use
// Ping to check the database.
func OpenPostgres(o PDOOptions) (*PostgresStore, error) {
	var err error
	if o, err = o.withDefaults("postgres"); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		// pgx masks the password in its parse errors.
		return nil, fmt.Errorf("postgres session store: %w", err)
	}
	table, cols, err := quoteNames(o, `"`)
	if err != nil {
		return nil, fmt.Errorf("postgres session store: %w", err)
	}
	id, data, lifetime, tm := cols[0], cols[1], cols[2], cols[3]
	// As for MySQL: the data is only sent when it fits MaxSize.
	query := fmt.Sprintf(
		"SELECT CASE WHEN octet_length(%[2]s) <= $1 THEN %[2]s END, octet_length(%[2]s), %[3]s, %[4]s FROM %[5]s WHERE %[1]s = $2",
		id, data, lifetime, tm, table)
	batchQuery := fmt.Sprintf(
		"SELECT %[1]s, CASE WHEN octet_length(%[2]s) <= $1 THEN %[2]s END, octet_length(%[2]s), %[3]s, %[4]s FROM %[5]s WHERE %[1]s = ANY($2)",
		id, data, lifetime, tm, table)

	cfg.MaxConns = int32(min(o.MaxOpenConns, 1<<30))
	cfg.MinConns = 0 // never connect in Open: the database may be down
	cfg.MaxConnLifetime = pdoConnMaxLifetime
	cfg.MaxConnIdleTime = pdoConnMaxIdleTime
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > o.LookupTimeout {
		cfg.ConnConfig.ConnectTimeout = o.LookupTimeout
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres session store: %w", err)
	}
	return &PostgresStore{
		pool:          pool,
		query:         query,
		batchQuery:    batchQuery,
		lookupTimeout: o.LookupTimeout,
		maxSize:       o.MaxSize,
		now:           time.Now,
		lim:           newLimiter("postgres", o.MaxConcurrent, o.BusyWait, o.Observer),
	}, nil
}

// Read looks the session up the way PdoSessionHandler::doRead does, minus
// its locking, with the same rules as PDOStore.Read. Database errors and
// timeouts are ErrUnavailable.
func (s *PostgresStore) Read(ctx context.Context, id string) (_ []byte, err error) {
	if !ValidSessionID(id) {
		return nil, fmt.Errorf("read session: %w", ErrInvalidID)
	}
	start := time.Now()
	defer func() { s.lim.observe("read", start, err) }()
	if s.closed.Load() {
		return nil, unavailable("read session", ErrClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, s.lookupTimeout)
	defer cancel()
	if err := s.lim.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.lim.release()
	var (
		data               []byte
		length             *int64
		lifetime, modified *int64 // NULL reads as 0, as PHP's (int) cast would
	)
	err = s.pool.QueryRow(ctx, s.query, s.maxSize, id).Scan(&data, &length, &lifetime, &modified)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("read session: %w", ErrNotFound)
	case err != nil:
		return nil, unavailable("read session", err)
	}
	r := judgeRow(data, deref(length), deref(lifetime), deref(modified), s.now().Unix(), s.maxSize)
	return r.Data, r.Err
}

// ReadMany looks up to 512 sessions up per SELECT ... WHERE id = ANY($2),
// judging each row as Read does; ids without a row are ErrNotFound.
func (s *PostgresStore) ReadMany(ctx context.Context, ids []string) (_ map[string]ReadResult, err error) {
	start := time.Now()
	defer func() { s.lim.observe("read_many", start, err) }()
	out, valid := readManyPrepare(ids)
	if len(valid) == 0 {
		return out, nil
	}
	if s.closed.Load() {
		return nil, unavailable("read sessions", ErrClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, s.lookupTimeout)
	defer cancel()
	if err := s.lim.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.lim.release()
	now := s.now().Unix()
	for len(valid) > 0 {
		chunk := valid[:min(len(valid), pgBatchMax)]
		valid = valid[len(chunk):]
		if err := s.readChunk(ctx, chunk, out, now); err != nil {
			return nil, unavailable("read sessions", err)
		}
		for _, id := range chunk {
			if r := out[id]; r.Data == nil && r.Err == nil {
				out[id] = ReadResult{Err: fmt.Errorf("read session: %w", ErrNotFound)}
			}
		}
	}
	return out, nil
}

// readChunk runs one batched select and records each row's judgement in out.
func (s *PostgresStore) readChunk(ctx context.Context, chunk []string, out map[string]ReadResult, now int64) error {
	rows, err := s.pool.Query(ctx, s.batchQuery, s.maxSize, chunk)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id                         string
			data                       []byte
			length, lifetime, modified *int64
		)
		if err := rows.Scan(&id, &data, &length, &lifetime, &modified); err != nil {
			return err
		}
		if _, asked := out[id]; asked {
			out[id] = judgeRow(data, deref(length), deref(lifetime), deref(modified), now, s.maxSize)
		}
	}
	return rows.Err()
}

// Ping checks that the database answers within the lookup timeout.
func (s *PostgresStore) Ping(ctx context.Context) (err error) {
	defer func(start time.Time) { s.lim.observe("ping", start, err) }(time.Now())
	if s.closed.Load() {
		return unavailable("ping", ErrClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, s.lookupTimeout)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close closes the connection pool, waiting for lookups in flight.
func (s *PostgresStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.pool.Close()
	return nil
}

// deref reads a nullable integer column, NULL as 0.
func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}
