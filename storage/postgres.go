package storage

import (
	"context"
	"fmt"

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
	sqlStore
	pool *pgxpool.Pool
}

var _ SessionStore = (*PostgresStore)(nil)

// pgBatchMax is how many ids one batched select asks for at most.
const pgBatchMax = 512

// OpenPostgres validates the options and opens a PostgreSQL session store
// with a pool of at most MaxOpenConns connections. It does not connect: use
// Ping to check the database.
func OpenPostgres(o PDOOptions) (*PostgresStore, error) {
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		// pgx masks the password in its parse errors.
		return nil, fmt.Errorf("postgres session store: %w", err)
	}
	s := &PostgresStore{}
	if o, err = s.open(postgresDialect, o); err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(min(o.MaxOpenConns, 1<<30))
	cfg.MinConns = 0 // never connect in Open: the database may be down
	cfg.MaxConnLifetime = pdoConnMaxLifetime
	cfg.MaxConnIdleTime = pdoConnMaxIdleTime
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > o.LookupTimeout {
		cfg.ConnConfig.ConnectTimeout = o.LookupTimeout
	}
	if s.pool, err = pgxpool.NewWithConfig(context.Background(), cfg); err != nil {
		return nil, fmt.Errorf("postgres session store: %w", err)
	}
	return s, nil
}

// Read looks the session up the way PdoSessionHandler::doRead does, minus
// its locking, with the same rules as PDOStore.Read. Database errors and
// timeouts are ErrUnavailable.
func (s *PostgresStore) Read(ctx context.Context, id string) ([]byte, error) {
	return s.read(ctx, id, pgx.ErrNoRows, func(ctx context.Context, r *sessionRow) error {
		return s.pool.QueryRow(ctx, s.query, s.maxSize, id).Scan(&r.data, &r.length, &r.lifetime, &r.modified)
	})
}

// ReadMany looks up to 512 sessions up per SELECT ... WHERE id = ANY($2),
// judging each row as Read does; ids without a row are ErrNotFound.
func (s *PostgresStore) ReadMany(ctx context.Context, ids []string) (map[string]ReadResult, error) {
	return s.readMany(ctx, ids, pgBatchMax, s.readChunk)
}

// readChunk runs one batched select and records each row's judgement in out.
func (s *PostgresStore) readChunk(ctx context.Context, chunk []string, out map[string]ReadResult, now int64) error {
	rows, err := s.pool.Query(ctx, s.batchQuery, s.maxSize, chunk)
	if err != nil {
		return err
	}
	defer rows.Close()
	return s.judgeRows(rows, out, now)
}

// Ping checks that the database answers within the lookup timeout.
func (s *PostgresStore) Ping(ctx context.Context) error {
	return s.ping(ctx, s.pool.Ping)
}

// Close closes the connection pool, waiting for lookups in flight.
func (s *PostgresStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.pool.Close()
	return nil
}
