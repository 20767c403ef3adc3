package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultFilesDir is where Debian's and Ubuntu's PHP packages keep sessions
// (session.save_path).
const DefaultFilesDir = "/var/lib/php/sessions"

// FilesOptions configures a FilesStore after PHP's "files" save handler.
type FilesOptions struct {
	// Dir is PHP's session.save_path as PHP takes it: a directory, or
	// "N;/path" or "N;MODE;/path" (see ParseSavePath), which sets Depth;
	// default DefaultFilesDir.
	Dir string
	// Depth is the N of a save_path of the form "N;/path": PHP then stores
	// session abc... as Dir/a/b/.../sess_abc... with N single-character
	// levels. Default 0, the usual flat directory. Set it or give Dir in
	// the "N;/path" form, not both.
	Depth int
	// GCMaxLifetime is PHP's session.gc_maxlifetime. PHP never checks expiry
	// when it reads a file; its garbage collector deletes files whose mtime
	// is more than gc_maxlifetime ago, so a file that old is judged expired
	// even if GC has not run yet. It is compared in whole seconds like PHP.
	// 0 means never judge expiry (leave it to PHP's GC).
	GCMaxLifetime time.Duration
	// MaxSize bounds how many bytes a read may return; bigger files fail
	// with ErrTooLarge without being read. 0 means DefaultMaxSize.
	MaxSize int64
	// MaxConcurrent is how many reader goroutines the store owns. Every
	// blocking file system call (open, stat, read, close) runs on one of
	// them, and each such call holds an OS thread while it blocks, so this
	// bounds the threads session reads can take however many handshakes
	// arrive at once. 0 means DefaultFilesReaders() (a few per CPU); raise
	// it for a session directory on network storage, where every read
	// waits for the network.
	MaxConcurrent int
	// QueueSize bounds the lookups waiting for a reader; 0 means
	// DefaultFilesQueueSize. A lookup that finds the queue full waits up
	// to BusyWait for room, then fails with ErrBusy.
	QueueSize int
	// BusyWait is how long a lookup waits for room in a full queue; 0
	// means DefaultBusyWait.
	BusyWait time.Duration
	// Observer, if set, is told about every lookup.
	Observer Observer
	// Watch makes the store a working ChangeNotifier (Linux): an inotify
	// instance watches the directory holding each watched session (Dir
	// itself when Depth is 0; with levels, the leaf directories of the
	// watched ids only, each while one of them is watched) for files
	// written, deleted or renamed, and one goroutine owned by the store
	// reports the watched ids among them. The process needs read
	// permission on those directories (PHP's 1733 directory owned by root
	// gives none to PHP's user: then the store reports the failure to
	// OnWatchError and changes are only seen by polling).
	Watch bool
	// OnWatchError, if set, is told why watching failed or lost track
	// (permission, the inotify watch limit, a directory removed). It is
	// called from Watch or from the store's goroutine, and must not block.
	OnWatchError func(error)
}

// ParseSavePath splits PHP's session.save_path for the files handler into
// the directory and the number of directory levels: "/path" (0 levels),
// "N;/path", or "N;MODE;/path", where MODE (octal, at most 07777) is the
// mode PHP creates files with, of no use to a reader. Like PHP's
// PS_OPEN_FUNC(files) it splits at the first two semicolons only, so the
// path may hold more. It is stricter than PHP's strtol: N must be decimal
// digits below MaxSessionIDLength (PHP cannot store an id not longer than
// N), MODE octal digits, and the path must not be empty (PHP would use the
// temporary directory).
func ParseSavePath(savePath string) (dir string, depth int, err error) {
	n, rest, ok := strings.Cut(savePath, ";")
	if !ok {
		return savePath, 0, nil
	}
	dir = rest
	if mode, path, ok := strings.Cut(rest, ";"); ok {
		dir = path
		m, err := strconv.ParseUint(mode, 8, 32)
		if err != nil || m > 0o7777 || strings.ContainsAny(mode, "+-") {
			return "", 0, fmt.Errorf("session.save_path %q: mode %q is not octal up to 7777", savePath, mode)
		}
	}
	d, err := strconv.Atoi(n)
	if err != nil || d < 0 || d >= MaxSessionIDLength || strings.ContainsAny(n, "+-") {
		return "", 0, fmt.Errorf("session.save_path %q: levels %q: want 0 to %d", savePath, n, MaxSessionIDLength-1)
	}
	if dir == "" {
		return "", 0, fmt.Errorf("session.save_path %q: no directory", savePath)
	}
	return dir, d, nil
}

// FilesStore reads sessions written by PHP's built-in "files" save handler:
// one file named sess_<id> per session under session.save_path.
//
// The process needs search (x) permission on the directory and read
// permission on the files, which PHP creates mode 0600 (session.save_path is
// typically 1733, deliberately unlistable): run as PHP's user. A permission
// error is reported as ErrUnavailable, since it is a deployment problem and
// says nothing about the session.
//
// Consistency: PHP holds an exclusive flock on the file for the whole
// request and rewrites it with ftruncate+pwrite. FilesStore opens the file
// O_RDONLY and takes no lock, so it never makes a PHP request wait; the price
// is that a read can overlap a write. It therefore reads once and checks the
// file's size and mtime before and after; when the data came back empty (the
// gap between PHP's truncate and write) or the file changed under the read,
// it reads again, a few times. A read that keeps colliding fails with
// ErrUnavailable. A read overlapping a single write still in progress can in
// theory return a mix of old and new bytes; the serialized session format
// carries lengths, so its decoder rejects such data rather than misreading
// it.
//
// Goroutines: NewFilesStore starts MaxConcurrent reader goroutines, owned by
// the store, which do every file system call of Read, ReadMany and Ping;
// the lookup waits for its reader under its context. With Watch it also
// starts the inotify reader. Close stops them and waits for them.
type FilesStore struct {
	dir         string
	depth       int
	maxLifetime int64 // seconds; 0 = never expire
	maxSize     int64
	now         func() time.Time // injectable clock for tests
	closed      atomic.Bool
	obs         lookupObserver
	pool        *readerPool

	*watchSet               // the watched ids and their pending changes
	watcher   *filesWatcher // nil without Watch or where it failed to start
	watchErr  func(error)   // OnWatchError, may be nil
}

var (
	_ SessionStore   = (*FilesStore)(nil)
	_ ChangeNotifier = (*FilesStore)(nil)
)

// Retries when a read collides with PHP writing the file. PHP's truncate and
// write follow each other within microseconds, so a short pause is plenty.
const (
	filesReadAttempts = 3
	filesRetryPause   = 2 * time.Millisecond
)

// NewFilesStore checks the options and that Dir is a directory (it does not
// need to list Dir), and starts the readers: Close the store to stop them.
func NewFilesStore(o FilesOptions) (*FilesStore, error) {
	orDefault(&o.Dir, DefaultFilesDir)
	if strings.Contains(o.Dir, ";") {
		dir, depth, err := ParseSavePath(o.Dir)
		if err != nil {
			return nil, fmt.Errorf("files session store: %w", err)
		}
		if o.Depth != 0 && o.Depth != depth {
			return nil, fmt.Errorf("files session store: depth %d and save path with %d levels", o.Depth, depth)
		}
		o.Dir, o.Depth = dir, depth
	}
	if o.Depth < 0 || o.Depth >= MaxSessionIDLength {
		return nil, fmt.Errorf("files session store: invalid depth %d", o.Depth)
	}
	if o.GCMaxLifetime < 0 {
		return nil, fmt.Errorf("files session store: negative gc max lifetime %v", o.GCMaxLifetime)
	}
	if o.MaxSize < 0 {
		return nil, fmt.Errorf("files session store: negative max size %d", o.MaxSize)
	}
	if o.MaxConcurrent < 0 || o.QueueSize < 0 || o.BusyWait < 0 {
		return nil, errors.New("files session store: negative MaxConcurrent, QueueSize or BusyWait")
	}
	orDefault(&o.MaxConcurrent, DefaultFilesReaders())
	orDefault(&o.QueueSize, DefaultFilesQueueSize)
	orDefault(&o.MaxSize, DefaultMaxSize)
	dir := filepath.Clean(o.Dir)
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("files session store: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("files session store: %s is not a directory", dir)
	}
	s := &FilesStore{
		dir:         dir,
		depth:       o.Depth,
		maxLifetime: int64(o.GCMaxLifetime / time.Second),
		maxSize:     o.MaxSize,
		now:         time.Now,
		obs:         lookupObserver{store: "files", obs: o.Observer},
	}
	s.pool = newReaderPool(o.MaxConcurrent, o.QueueSize, o.BusyWait, s.read)
	s.watchSet, s.watchErr = newWatchSet(), o.OnWatchError
	if o.Watch {
		w, err := newFilesWatcher(s)
		if err != nil {
			s.reportWatchErr(err)
		} else {
			s.watcher = w
		}
	}
	return s, nil
}

// reportWatchErr tells OnWatchError, if any.
func (s *FilesStore) reportWatchErr(err error) {
	if s.watchErr != nil {
		s.watchErr(fmt.Errorf("files session store: watch: %w", err))
	}
}

// leafDir is the directory PHP keeps session id in; ok as for path.
func (s *FilesStore) leafDir(id string) (string, bool) {
	p, ok := s.path(id)
	if !ok {
		return "", false
	}
	return filepath.Dir(p), true
}

// Watch implements ChangeNotifier. With directory levels, the first watched
// id of a leaf directory adds an inotify watch on it; as a write or logout
// between the handshake's read and that watch would go unseen, the id is
// then reported changed once, so that it is read again.
func (s *FilesStore) Watch(id string, since ChangeMark) {
	if !s.watch(id, since) || s.watcher == nil || s.depth == 0 {
		return
	}
	dir, ok := s.leafDir(id)
	if !ok {
		return
	}
	added, err := s.watcher.addDir(dir)
	if err != nil {
		s.reportWatchErr(err)
		return
	}
	if added {
		s.changedID(id)
	}
}

// Unwatch implements ChangeNotifier; the last watched id of a leaf
// directory removes its inotify watch.
func (s *FilesStore) Unwatch(id string) {
	if !s.unwatch(id) || s.watcher == nil || s.depth == 0 {
		return
	}
	if dir, ok := s.leafDir(id); ok {
		s.watcher.releaseDir(dir)
	}
}

// changedFile is told by the watcher that a file name in dir was written,
// deleted or renamed; it reports the watched session it holds, if any.
func (s *FilesStore) changedFile(dir, name string) {
	id, ok := strings.CutPrefix(name, "sess_")
	if !ok || !ValidSessionID(id) {
		return
	}
	if want, ok := s.leafDir(id); ok && want == dir {
		s.changedID(id)
	}
}

// path is where PHP's files handler keeps session id (ps_files_path_create).
// ok is false when id is too short for the configured depth, in which case
// PHP could not have stored it either.
func (s *FilesStore) path(id string) (p string, ok bool) {
	if len(id) <= s.depth {
		return "", false
	}
	parts := make([]string, 0, s.depth+2)
	parts = append(parts, s.dir)
	for i := 0; i < s.depth; i++ {
		parts = append(parts, id[i:i+1])
	}
	parts = append(parts, "sess_"+id)
	return filepath.Join(parts...), true
}

// Read returns the contents of the session file for id, read by one of the
// store's readers. See FilesStore for how it copes with concurrent writes by
// PHP.
func (s *FilesStore) Read(ctx context.Context, id string) (data []byte, err error) {
	if !ValidSessionID(id) {
		return nil, fmt.Errorf("read session: %w", ErrInvalidID)
	}
	start := time.Now()
	defer func() { s.obs.observe("read", start, err) }()
	if s.closed.Load() {
		return nil, unavailable("read session", ErrClosed)
	}
	return s.pool.readFile(ctx, "read session", id)
}

// ReadMany reads the files one after the other on one reader, so that a
// revalidation batch takes one reader, not all of them, and handshakes keep
// the others. A file that cannot be read for a reason that says nothing
// about the session (permissions, I/O) fails the batch.
func (s *FilesStore) ReadMany(ctx context.Context, ids []string) (_ map[string]ReadResult, err error) {
	start := time.Now()
	defer func() { s.obs.observe("read_many", start, err) }()
	if s.closed.Load() {
		return nil, unavailable("read sessions", ErrClosed)
	}
	out, valid := readManyPrepare(ids)
	if len(valid) == 0 {
		return out, nil
	}
	var rerr error
	if err := s.pool.do(ctx, "read sessions", func(ctx context.Context) {
		for _, id := range valid {
			data, err := s.read(ctx, id)
			if errors.Is(err, ErrUnavailable) {
				rerr = err
				return
			}
			out[id] = ReadResult{Data: data, Err: err}
		}
	}); err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, rerr
	}
	return out, nil
}

// read is Read without the pool and the observation; it runs on a reader.
func (s *FilesStore) read(ctx context.Context, id string) ([]byte, error) {
	if !ValidSessionID(id) {
		return nil, fmt.Errorf("read session: %w", ErrInvalidID)
	}
	if s.closed.Load() {
		return nil, unavailable("read session", ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, unavailable("read session", err)
	}
	p, ok := s.path(id)
	if !ok {
		return nil, fmt.Errorf("read session: %w", ErrNotFound)
	}
	f, err := openSessionFile(p)
	if err != nil {
		return nil, s.fsError(err)
	}
	defer f.close()

	for attempt := 1; ; attempt++ {
		data, changed, err := s.readOnce(f)
		if err != nil {
			return nil, err
		}
		if !changed && len(data) > 0 {
			return data, nil
		}
		if attempt == filesReadAttempts {
			if changed {
				return nil, unavailable("read session", errors.New("session file kept changing while being read"))
			}
			// PHP creates the file empty when it starts a new session
			// and only fills it at the end of the request: no session yet.
			return nil, fmt.Errorf("read session: empty file: %w", ErrNotFound)
		}
		t := time.NewTimer(filesRetryPause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, unavailable("read session", ctx.Err())
		case <-t.C:
		}
	}
}

// readOnce reads the whole open file and reports whether it changed (size or
// mtime) while it was being read.
func (s *FilesStore) readOnce(f sessionFile) (data []byte, changed bool, err error) {
	size, mtime, regular, err := f.stat()
	if err != nil {
		return nil, false, s.fsError(err)
	}
	if !regular {
		// PHP only ever creates regular files; anything else is not a
		// session (and reading a FIFO could block).
		return nil, false, fmt.Errorf("read session: not a regular file: %w", ErrNotFound)
	}
	if s.expired(mtime) {
		return nil, false, fmt.Errorf("read session: %w", ErrExpired)
	}
	if size > s.maxSize {
		return nil, false, fmt.Errorf("read session: %d bytes, limit %d: %w", size, s.maxSize, ErrTooLarge)
	}
	// One byte past the size it had: a file that grew meanwhile fills it
	// and counts as changed, and the next attempt judges its new size. One
	// allocation of the right size, where a growing buffer would copy.
	buf := make([]byte, size+1)
	n, err := f.readAt(buf)
	if err != nil {
		return nil, false, s.fsError(err)
	}
	if int64(n) > s.maxSize {
		return nil, false, fmt.Errorf("read session: more than %d bytes: %w", s.maxSize, ErrTooLarge)
	}
	afterSize, afterMtime, _, err := f.stat()
	if err != nil {
		return nil, false, s.fsError(err)
	}
	changed = afterSize != size || !afterMtime.Equal(mtime) || int64(n) != afterSize
	return buf[:n:n], changed, nil
}

// expired applies PHP's GC rule (ps_files_cleanup_dir): a file is garbage
// when mtime < now - gc_maxlifetime, in whole seconds.
func (s *FilesStore) expired(mtime time.Time) bool {
	return s.maxLifetime > 0 && mtime.Unix() < s.now().Unix()-s.maxLifetime
}

// fsError maps a file system error to the package's sentinels. The path is
// dropped from the message because it contains the session id.
func (s *FilesStore) fsError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist), isNoSuchPath(err):
		return fmt.Errorf("read session: %w", ErrNotFound)
	case isSymlinkError(err):
		// PHP opens session files with O_NOFOLLOW too and would fail on
		// a symlink; it is not a session PHP could use.
		return fmt.Errorf("read session: symlink: %w", ErrNotFound)
	}
	return unavailable("read session", err)
}

// Ping checks, on a reader, that the session directory is still there and
// reachable.
func (s *FilesStore) Ping(ctx context.Context) (err error) {
	defer func(start time.Time) { s.obs.observe("ping", start, err) }(time.Now())
	if s.closed.Load() {
		return unavailable("ping", ErrClosed)
	}
	var perr error
	if err := s.pool.do(ctx, "ping", func(ctx context.Context) { perr = s.ping(ctx) }); err != nil {
		return err
	}
	return perr
}

// ping is Ping's file system work.
func (s *FilesStore) ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return unavailable("ping", err)
	}
	fi, err := os.Stat(s.dir)
	if err != nil {
		return unavailable("ping", err)
	}
	if !fi.IsDir() {
		return unavailable("ping", errors.New(strconv.Quote(s.dir)+" is not a directory"))
	}
	return nil
}

// Close stops taking lookups, stops the readers and waits for them; the
// lookups already queued fail with ErrClosed (wrapped with ErrUnavailable).
// The store holds no open files between reads.
func (s *FilesStore) Close() error {
	s.closed.Store(true)
	s.pool.close()
	if s.watcher != nil {
		s.watcher.close()
	}
	return nil
}
