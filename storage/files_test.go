package storage

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newFilesFixture is a FilesStore over a fresh temp dir with a pinned clock;
// put writes sess_<id> and sets its mtime the way PHP's write would leave it.
func newFilesFixture(t *testing.T) sessionFixture {
	t.Helper()
	dir := t.TempDir()
	const maxLifetime = 1440 * time.Second // PHP's default gc_maxlifetime
	s := openFilesStore(t, FilesOptions{Dir: dir, GCMaxLifetime: maxLifetime, MaxSize: 1024})
	now := pinnedNow()
	s.now = func() time.Time { return now }
	return sessionFixture{
		store:       s,
		maxLifetime: maxLifetime,
		maxSize:     1024,
		put: func(t *testing.T, id string, data []byte, age time.Duration) {
			t.Helper()
			writeSessionFile(t, filepath.Join(dir, "sess_"+id), data, now.Add(-age))
		},
	}
}

// openFilesStore opens a FilesStore that is closed (its readers stopped)
// when the test ends.
func openFilesStore(t testing.TB, o FilesOptions) *FilesStore {
	t.Helper()
	s, err := NewFilesStore(o)
	if err != nil {
		t.Fatalf("NewFilesStore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// writeSessionFile writes a session file mode 0600, as PHP does, with mtime.
func writeSessionFile(t *testing.T, path string, data []byte, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestFilesStoreContract(t *testing.T) {
	testSessionStoreContract(t, newFilesFixture)
}

func TestNewFilesStoreOptions(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		o       FilesOptions
		wantErr bool
	}{
		{"temp dir", FilesOptions{Dir: dir}, false},
		{"missing dir", FilesOptions{Dir: filepath.Join(dir, "nope")}, true},
		{"dir is a file", FilesOptions{Dir: file}, true},
		{"negative depth", FilesOptions{Dir: dir, Depth: -1}, true},
		{"negative lifetime", FilesOptions{Dir: dir, GCMaxLifetime: -time.Second}, true},
		{"negative max size", FilesOptions{Dir: dir, MaxSize: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewFilesStore(tt.o)
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewFilesStore(%+v) error = %v, wantErr %v", tt.o, err, tt.wantErr)
			}
			if err == nil {
				defer s.Close()
				if s.maxSize != DefaultMaxSize {
					t.Errorf("default MaxSize = %d, want %d", s.maxSize, DefaultMaxSize)
				}
				if err := s.Ping(context.Background()); err != nil {
					t.Errorf("Ping: %v", err)
				}
			}
		})
	}
	if s, err := NewFilesStore(FilesOptions{}); err == nil {
		if s.dir != DefaultFilesDir {
			t.Errorf("default Dir = %q, want %q", s.dir, DefaultFilesDir)
		}
		s.Close()
	}
}

// TestFilesStoreInvalidIDTouchesNothing plants files an unvalidated id would
// reach, and removes the directory: a store that did any I/O for these ids
// would return their content or ErrNotFound, not ErrInvalidID.
func TestFilesStoreInvalidIDTouchesNothing(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "sessions")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := openFilesStore(t, FilesOptions{Dir: dir})
	secret := []byte("root:x:0:0")
	// "sess_../secret" resolves to dir/sess_../secret.
	writeSessionFile(t, filepath.Join(dir, "sess_..", "secret"), secret, time.Now())
	writeSessionFile(t, filepath.Join(dir, "sess_a b"), secret, time.Now())
	writeSessionFile(t, filepath.Join(dir, "sess_"), secret, time.Now())
	writeSessionFile(t, filepath.Join(dir, "sess_abc.def"), secret, time.Now())

	ids := []string{"../secret", "a b", "", "abc.def", "../../etc/passwd", "abc\x00def", "/etc/passwd"}
	for _, id := range ids {
		if got, err := s.Read(context.Background(), id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Read(%q) = %q, %v; want ErrInvalidID", id, got, err)
		}
	}
	// Without the directory, any file system access would fail with
	// ErrNotFound or ErrUnavailable; validation must still come first.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := s.Read(context.Background(), id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Read(%q) without dir = %v; want ErrInvalidID", id, err)
		}
	}
	if _, err := s.Read(context.Background(), "validButGone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("valid id without dir = %v; want ErrNotFound", err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping without dir = %v; want ErrUnavailable", err)
	}
}

func TestFilesStoreExpiryByMtime(t *testing.T) {
	dir := t.TempDir()
	now := pinnedNow()
	data := []byte("user|s:5:\"alice\";")
	tests := []struct {
		name     string
		lifetime time.Duration
		age      time.Duration
		wantErr  error
	}{
		{"fresh", 1440 * time.Second, 0, nil},
		{"mtime in the future", 1440 * time.Second, -time.Hour, nil},
		{"at gc_maxlifetime", 1440 * time.Second, 1440 * time.Second, nil},
		{"one second past", 1440 * time.Second, 1441 * time.Second, ErrExpired},
		// PHP compares st_mtime and time() in whole seconds: an mtime
		// 1440.5s ago is second now-1441, 1439.5s ago is second now-1440.
		{"mtime 1439.5s ago truncates to the edge", 1440 * time.Second, 1439*time.Second + 500*time.Millisecond, nil},
		{"mtime 1440.5s ago truncates past it", 1440 * time.Second, 1440*time.Second + 500*time.Millisecond, ErrExpired},
		{"a day past", 1440 * time.Second, 24 * time.Hour, ErrExpired},
		{"lifetime 0 never expires", 0, 10 * 365 * 24 * time.Hour, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openFilesStore(t, FilesOptions{Dir: dir, GCMaxLifetime: tt.lifetime})
			s.now = func() time.Time { return now }
			id := "expiry" + string(rune('a'+i))
			writeSessionFile(t, filepath.Join(dir, "sess_"+id), data, now.Add(-tt.age))
			got, err := s.Read(context.Background(), id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Read = %q, %v; want error %v", got, err, tt.wantErr)
			}
			if tt.wantErr == nil && !bytes.Equal(got, data) {
				t.Fatalf("Read = %q, want %q", got, data)
			}
		})
	}
}

func TestFilesStoreSizeLimit(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		maxSize int64
		size    int
		wantErr error
	}{
		{"under limit", 100, 99, nil},
		{"at limit", 100, 100, nil},
		{"over limit", 100, 101, ErrTooLarge},
		{"far over limit", 100, 1 << 20, ErrTooLarge},
		{"default limit allows 1 MiB", 0, 1 << 20, nil},
		{"default limit refuses DefaultMaxSize+1", 0, int(DefaultMaxSize) + 1, ErrTooLarge},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openFilesStore(t, FilesOptions{Dir: dir, MaxSize: tt.maxSize})
			id := "size" + string(rune('a'+i))
			data := bytes.Repeat([]byte("s"), tt.size)
			writeSessionFile(t, filepath.Join(dir, "sess_"+id), data, time.Now())
			got, err := s.Read(context.Background(), id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Read = %d bytes, %v; want error %v", len(got), err, tt.wantErr)
			}
			if tt.wantErr == nil && !bytes.Equal(got, data) {
				t.Fatalf("Read returned %d bytes, want %d", len(got), len(data))
			}
		})
	}
}

func TestFilesStoreDepth(t *testing.T) {
	dir := t.TempDir()
	s := openFilesStore(t, FilesOptions{Dir: dir, Depth: 2})
	data := []byte("a|i:1;")
	// PHP's save_path "2;dir" keeps session abXYZ as dir/a/b/sess_abXYZ.
	writeSessionFile(t, filepath.Join(dir, "a", "b", "sess_abXYZ"), data, time.Now())
	writeSessionFile(t, filepath.Join(dir, "sess_flat01"), data, time.Now())
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id      string
		wantErr error
	}{
		{"abXYZ", nil},
		{"abOther", ErrNotFound},
		{"flat01", ErrNotFound}, // a flat file is not where PHP looks at depth 2
		{"ab", ErrNotFound},     // dir/a/b/sess_ab: not there
		{"a", ErrNotFound},      // too short for depth 2, PHP refuses it
		{"fxyz", ErrNotFound},   // dir/f is a file, not a level
	}
	for _, tt := range tests {
		got, err := s.Read(context.Background(), tt.id)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("Read(%q) = %q, %v; want %v", tt.id, got, err, tt.wantErr)
		}
	}
}

func TestFilesStoreIDTooLongForFileName(t *testing.T) {
	s := openFilesStore(t, FilesOptions{Dir: t.TempDir()})
	// Valid for PHP's session module, but sess_<id> exceeds NAME_MAX, so
	// the files handler can never have stored it.
	id := strings.Repeat("z", MaxSessionIDLength)
	if _, err := s.Read(context.Background(), id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read(256 chars) = %v; want ErrNotFound", err)
	}
}
