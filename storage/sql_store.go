package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// sqlDialect is how one database spells the two selects of a
// PdoSessionHandler table; everything else about the tables is Symfony's and
// the same for MySQL and PostgreSQL.
type sqlDialect struct {
	kind     string // the store's kind, in errors and observations
	quote    string // the identifier quote
	length   string // the function giving a value's length in bytes
	maxParam string // the placeholder of MaxSize, the first parameter
	oneID    string // what follows the id column in the single select
	manyIDs  string // what follows the id column in the batched select
}

var (
	// mysqlDialect's batched select is a fmt pattern: %s is the list of
	// placeholders, one per id of the prepared batch size.
	mysqlDialect = sqlDialect{kind: "mysql", quote: "`", length: "LENGTH",
		maxParam: "?", oneID: " = ?", manyIDs: " IN (%s)"}
	// postgresDialect passes the ids as one array parameter.
	postgresDialect = sqlDialect{kind: "postgres", quote: `"`, length: "octet_length",
		maxParam: "$1", oneID: " = $2", manyIDs: " = ANY($2)"}
)

// sqlStore is what the stores of PdoSessionHandler tables (PDOStore for
// MySQL, PostgresStore) share: the selects, the options a lookup needs, the
// clock and the concurrency limit, and the steps of every lookup around the
// driver's call (id check, observation, deadline, slot, error mapping, the
// judgement of the rows). The driver's call is a function that runs under
// the lookup's deadline and slot.
type sqlStore struct {
	query         string // the single select: MaxSize, id
	batchQuery    string // the batched select: MaxSize, ids
	lookupTimeout time.Duration
	maxSize       int64
	now           func() time.Time // injectable clock for tests
	lim           *limiter
	closed        atomic.Bool
}

// open checks o and fills in its defaults, builds d's selects over o's table
// and columns, and sets s up. It returns o with its defaults, for the
// driver's own settings. Errors name the store.
func (s *sqlStore) open(d sqlDialect, o PDOOptions) (PDOOptions, error) {
	o, err := o.withDefaults(d.kind)
	if err != nil {
		return o, err
	}
	table, cols, err := quoteNames(o, d.quote)
	if err != nil {
		return o, fmt.Errorf("%s session store: %w", d.kind, err)
	}
	id, data, lifetime, tm := cols[0], cols[1], cols[2], cols[3]
	// The data is only sent when it fits MaxSize; its length tells an
	// oversized session (data NULL, length > max) from an empty one.
	selected := fmt.Sprintf("CASE WHEN %[1]s(%[2]s) <= %[3]s THEN %[2]s END, %[1]s(%[2]s), %[4]s, %[5]s FROM %[6]s WHERE %[7]s",
		d.length, data, d.maxParam, lifetime, tm, table, id)
	s.query = "SELECT " + selected + d.oneID
	s.batchQuery = "SELECT " + id + ", " + selected + d.manyIDs
	s.lookupTimeout = o.LookupTimeout
	s.maxSize = o.MaxSize
	s.now = time.Now
	s.lim = newLimiter(d.kind, o.MaxConcurrent, o.BusyWait, o.Observer)
	return o, nil
}

// sessionRow is one row of the selects: the id (batched select only), the
// data (NULL when over MaxSize), its length, sess_lifetime and sess_time.
// NULL numbers read as 0, as PHP's (int) cast would.
type sessionRow struct {
	id                         string
	data                       []byte
	length, lifetime, modified sql.NullInt64
}

// judge applies judgeRow to r.
func (r *sessionRow) judge(now, maxSize int64) ReadResult {
	return judgeRow(r.data, r.length.Int64, r.lifetime.Int64, r.modified.Int64, now, maxSize)
}

// lookup runs fn under the lookup timeout, holding a slot of the
// concurrency limit; what names the lookup in its errors. fn's error is
// returned as it is.
func (s *sqlStore) lookup(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	if s.closed.Load() {
		return unavailable(what, ErrClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, s.lookupTimeout)
	defer cancel()
	if err := s.lim.acquire(ctx); err != nil {
		return err
	}
	defer s.lim.release()
	return fn(ctx)
}

// read is Read of both stores: fetch runs the single select for the (valid)
// id under the lookup's deadline and slot, scanning its row into row;
// noRows is the error the driver returns when there is no row.
func (s *sqlStore) read(ctx context.Context, id string, noRows error, fetch func(ctx context.Context, row *sessionRow) error) (data []byte, err error) {
	if !ValidSessionID(id) {
		return nil, fmt.Errorf("read session: %w", ErrInvalidID)
	}
	start := time.Now()
	defer func() { s.lim.observe("read", start, err) }()
	err = s.lookup(ctx, "read session", func(ctx context.Context) error {
		var row sessionRow
		err := fetch(ctx, &row)
		switch {
		case errors.Is(err, noRows):
			return fmt.Errorf("read session: %w", ErrNotFound)
		case err != nil:
			return unavailable("read session", err)
		}
		r := row.judge(s.now().Unix(), s.maxSize)
		data = r.Data
		return r.Err
	})
	return data, err
}

// readMany is ReadMany of both stores: the valid ids are cut into chunks of
// at most chunkMax, and readChunk runs the batched select for each under the
// one deadline and slot of the whole batch, recording each row's judgement
// in out (judgeRows); ids left without a row are ErrNotFound.
func (s *sqlStore) readMany(ctx context.Context, ids []string, chunkMax int, readChunk func(ctx context.Context, chunk []string, out map[string]ReadResult, now int64) error) (_ map[string]ReadResult, err error) {
	start := time.Now()
	defer func() { s.lim.observe("read_many", start, err) }()
	out, valid := readManyPrepare(ids)
	if len(valid) == 0 {
		return out, nil
	}
	err = s.lookup(ctx, "read sessions", func(ctx context.Context) error {
		now := s.now().Unix()
		for len(valid) > 0 {
			chunk := valid[:min(len(valid), chunkMax)]
			valid = valid[len(chunk):]
			if err := readChunk(ctx, chunk, out, now); err != nil {
				return unavailable("read sessions", err)
			}
			for _, id := range chunk {
				if r := out[id]; r.Data == nil && r.Err == nil {
					out[id] = ReadResult{Err: fmt.Errorf("read session: %w", ErrNotFound)}
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// sqlRows is what judgeRows needs of a batched select's rows; *sql.Rows and
// pgx.Rows both have it.
type sqlRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// judgeRows records the judgement of each row of a batched select in out,
// for the ids that were asked for.
func (s *sqlStore) judgeRows(rows sqlRows, out map[string]ReadResult, now int64) error {
	for rows.Next() {
		var r sessionRow
		if err := rows.Scan(&r.id, &r.data, &r.length, &r.lifetime, &r.modified); err != nil {
			return err
		}
		if _, asked := out[r.id]; asked {
			out[r.id] = r.judge(now, s.maxSize)
		}
	}
	return rows.Err()
}

// ping is Ping of both stores: ping asks the database to answer within the
// lookup timeout. It takes no slot of the concurrency limit.
func (s *sqlStore) ping(ctx context.Context, ping func(context.Context) error) (err error) {
	defer func(start time.Time) { s.lim.observe("ping", start, err) }(time.Now())
	if s.closed.Load() {
		return unavailable("ping", ErrClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, s.lookupTimeout)
	defer cancel()
	if err := ping(ctx); err != nil {
		return unavailable("ping", err)
	}
	return nil
}
