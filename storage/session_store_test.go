package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestValidSessionID(t *testing.T) {
	tests := []struct {
		name string
		id   string
		want bool
	}{
		{"php default 26 chars (sid_bits 4)", "9s1k2mb5lq0dd5ebpb6gn0b3ec", true},
		{"sid_bits 5 alphabet", "abcdefghijklmnopqrstuv0123456789", true},
		{"sid_bits 6 alphabet with comma and dash", "aZ09,-Qx", true},
		{"single char", "a", true},
		{"max length 256", strings.Repeat("a", 256), true},
		{"empty", "", false},
		{"too long 257", strings.Repeat("a", 257), false},
		{"path traversal", "../etc/passwd", false},
		{"slash", "abc/def", false},
		{"dot", "abc.def", false},
		{"space", "abc def", false},
		{"underscore", "abc_def", false},
		{"NUL byte", "abc\x00def", false},
		{"newline", "abc\n", false},
		{"quote", "abc'--", false},
		{"backtick", "abc`", false},
		{"non-ASCII letter", "abcé", false},
		{"percent encoded", "abc%2F", false},
		{"semicolon", "a;b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidSessionID(tt.id); got != tt.want {
				t.Errorf("ValidSessionID(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

// sessionFixture is one SessionStore under the contract test, with a way to
// write sessions into its backing store the way the PHP application does.
type sessionFixture struct {
	store SessionStore
	// put stores data under id as the PHP app would, last written age
	// before the store's (pinned) clock.
	put func(t *testing.T, id string, data []byte, age time.Duration)
	// maxLifetime is the store's session lifetime (gc_maxlifetime).
	maxLifetime time.Duration
	// maxSize is the store's MaxSize.
	maxSize int64
	// ttlExpiry is set for stores where the backend judges expiry itself
	// (Redis: the key's TTL): an expired session is then a missing key,
	// ErrNotFound, and there is no "exactly at the edge" to observe.
	ttlExpiry bool
}

// testSessionStoreContract is what every SessionStore must do, whatever the
// backend. newFixture is called once for the shared cases and once more for
// the Close case.
func testSessionStoreContract(t *testing.T, newFixture func(t *testing.T) sessionFixture) {
	f := newFixture(t)
	ctx := context.Background()
	ml := f.maxLifetime

	binary := []byte("a\x00b\xff\r\n|s:3:\"\x00x\";")
	php := []byte(`_sf2_attributes|a:1:{s:14:"_security_main";s:6:"secret";}_sf2_meta|a:3:{s:1:"u";i:1700000000;}`)

	tests := []struct {
		name    string
		put     bool
		putID   string // defaults to id
		id      string
		data    []byte
		age     time.Duration
		want    []byte
		wantErr error
	}{
		{name: "found", put: true, id: "contractFound01", data: php, want: php},
		{name: "binary data round-trips", put: true, id: "contractBinary01", data: binary, want: binary},
		{name: "id alphabet with comma and dash", put: true, id: "a,b-C9zz", data: php, want: php},
		// 128 fits every backend: Symfony's sess_id is VARBINARY(128), and
		// sess_<id> fits NAME_MAX for ids up to 250.
		{name: "long id", put: true, id: strings.Repeat("L", 128), data: php, want: php},
		{name: "not found", id: "contractMissing01", wantErr: ErrNotFound},
		{name: "ids are case-sensitive", put: true, putID: "contractCase01", id: "CONTRACTCASE01", data: php, wantErr: ErrNotFound},
		{name: "empty data is no session", put: true, id: "contractEmpty01", data: []byte{}, wantErr: ErrNotFound},
		{name: "written a minute ago", put: true, id: "contractRecent01", data: php, age: time.Minute, want: php},
		{name: "exactly at max lifetime is still valid", put: true, id: "contractEdge01", data: php, age: ml, want: php},
		{name: "one second past max lifetime is expired", put: true, id: "contractExpired01", data: php, age: ml + time.Second, wantErr: ErrExpired},
		{name: "long expired", put: true, id: "contractExpired02", data: php, age: 10 * ml, wantErr: ErrExpired},
		{name: "exactly max size", put: true, id: "contractMaxSize01", data: bytes.Repeat([]byte("x"), int(f.maxSize)), want: bytes.Repeat([]byte("x"), int(f.maxSize))},
		{name: "over max size", put: true, id: "contractTooBig01", data: bytes.Repeat([]byte("x"), int(f.maxSize)+1), wantErr: ErrTooLarge},
		{name: "invalid: empty", id: "", wantErr: ErrInvalidID},
		{name: "invalid: traversal", id: "../../etc/passwd", wantErr: ErrInvalidID},
		{name: "invalid: SQL", id: "x' OR '1'='1", wantErr: ErrInvalidID},
		{name: "invalid: NUL", id: "abc\x00", wantErr: ErrInvalidID},
		{name: "invalid: too long", id: strings.Repeat("a", MaxSessionIDLength+1), wantErr: ErrInvalidID},
	}
	if f.ttlExpiry {
		kept := tests[:0]
		for _, tt := range tests {
			if tt.age == ml {
				continue
			}
			if tt.wantErr == ErrExpired {
				tt.wantErr = ErrNotFound
			}
			kept = append(kept, tt)
		}
		tests = kept
	}
	for _, tt := range tests {
		if tt.put {
			putID := tt.putID
			if putID == "" {
				putID = tt.id
			}
			f.put(t, putID, tt.data, tt.age)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.store.Read(ctx, tt.id)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Read = %q, %v; want error %v", got, err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("Read returned data %q with error", got)
				}
				if len(tt.id) >= 6 && strings.Contains(err.Error(), tt.id) {
					t.Errorf("error %q leaks the session id", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("Read = %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("ReadMany agrees with Read", func(t *testing.T) {
		ids := make([]string, 0, len(tests)+1)
		for _, tt := range tests {
			ids = append(ids, tt.id)
		}
		ids = append(ids, tests[0].id) // a duplicate is answered once
		got, err := f.store.ReadMany(ctx, ids)
		if err != nil {
			t.Fatalf("ReadMany: %v", err)
		}
		if len(got) != len(tests) {
			t.Errorf("ReadMany returned %d results for %d distinct ids", len(got), len(tests))
		}
		for _, tt := range tests {
			r, ok := got[tt.id]
			if !ok {
				t.Errorf("%s: no result", tt.name)
				continue
			}
			if tt.wantErr != nil {
				if !errors.Is(r.Err, tt.wantErr) || r.Data != nil {
					t.Errorf("%s: ReadMany = %q, %v; want %v", tt.name, r.Data, r.Err, tt.wantErr)
				}
				if r.Err != nil && len(tt.id) >= 6 && strings.Contains(r.Err.Error(), tt.id) {
					t.Errorf("%s: error %q leaks the session id", tt.name, r.Err)
				}
				continue
			}
			if r.Err != nil || !bytes.Equal(r.Data, tt.want) {
				t.Errorf("%s: ReadMany = %q, %v; want %q", tt.name, r.Data, r.Err, tt.want)
			}
		}
		empty, err := f.store.ReadMany(ctx, nil)
		if err != nil || len(empty) != 0 {
			t.Errorf("ReadMany(nil) = %v, %v", empty, err)
		}
	})

	t.Run("ReadMany in chunks", func(t *testing.T) {
		// More ids than one SQL statement takes: 1100 = 2 x 512 + 76.
		ids := make([]string, 1100)
		for i := range ids {
			ids[i] = fmt.Sprintf("contractMany%04d", i)
		}
		for _, i := range []int{0, 511, 512, 1023, 1099} {
			f.put(t, ids[i], php, 0)
		}
		got, err := f.store.ReadMany(ctx, ids)
		if err != nil {
			t.Fatalf("ReadMany: %v", err)
		}
		found := 0
		for _, id := range ids {
			r := got[id]
			switch {
			case r.Err == nil && bytes.Equal(r.Data, php):
				found++
			case !errors.Is(r.Err, ErrNotFound):
				t.Fatalf("ReadMany: unexpected result %q, %v", r.Data, r.Err)
			}
		}
		if len(got) != len(ids) || found != 5 {
			t.Fatalf("ReadMany: %d results, %d found; want %d, 5", len(got), found, len(ids))
		}
	})

	t.Run("canceled context is unavailable", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := f.store.Read(cctx, "contractFound01")
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Read with canceled context = %v; want ErrUnavailable and context.Canceled", err)
		}
	})

	t.Run("ping", func(t *testing.T) {
		if err := f.store.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})

	t.Run("concurrent reads", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					got, err := f.store.Read(ctx, "contractFound01")
					if err != nil || !bytes.Equal(got, php) {
						errs <- errors.Join(err, errors.New("concurrent read returned wrong data"))
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})

	t.Run("closed store is unavailable", func(t *testing.T) {
		g := newFixture(t)
		g.put(t, "contractClosed01", php, 0)
		if _, err := g.store.Read(ctx, "contractClosed01"); err != nil {
			t.Fatalf("Read before Close: %v", err)
		}
		if err := g.store.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if _, err := g.store.Read(ctx, "contractClosed01"); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Read after Close = %v; want ErrUnavailable", err)
		}
		if _, err := g.store.ReadMany(ctx, []string{"contractClosed01"}); !errors.Is(err, ErrUnavailable) {
			t.Errorf("ReadMany after Close = %v; want ErrUnavailable", err)
		}
		if err := g.store.Ping(ctx); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Ping after Close = %v; want ErrUnavailable", err)
		}
		if err := g.store.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// pinnedNow is the clock the tests give stores: whole seconds, like the
// timestamps PHP writes.
func pinnedNow() time.Time { return time.Now().Truncate(time.Second) }
