package storage

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// filesWatchMask is what a watched directory reports: a session file PHP
// finished writing (it closes the file at the end of each request that
// wrote it), unlinked (session_destroy, regenerate with delete, GC) or
// renamed away or in place; and the directory itself going away.
const filesWatchMask = unix.IN_CLOSE_WRITE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// filesWatchBuffer is the read buffer of the inotify reader: room for a
// few hundred events per read; the kernel queues the rest (up to
// fs.inotify.max_queued_events, then IN_Q_OVERFLOW).
const filesWatchBuffer = 64 << 10

// filesWatcher is the files store's inotify instance and the goroutine
// reading it. Directories are watched while counted: Dir for good when
// the store has no levels, each leaf directory while an id in it is
// watched.
type filesWatcher struct {
	s    *FilesStore
	f    *os.File // non-blocking, so Close wakes the reader through the poller
	done chan struct{}
	once sync.Once

	mu    sync.Mutex
	dirs  map[string]*watchedDir // path → watch
	byWD  map[int32]string       // watch descriptor → path
	fdInt int
}

// watchedDir is one inotify watch and how many watched ids need it.
type watchedDir struct {
	wd   int32
	refs int
}

// newFilesWatcher makes the inotify instance, watches Dir when the store
// has no levels, and starts the reader.
func newFilesWatcher(s *FilesStore) (*filesWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	w := &filesWatcher{
		s:     s,
		f:     os.NewFile(uintptr(fd), "inotify"),
		done:  make(chan struct{}),
		dirs:  make(map[string]*watchedDir),
		byWD:  make(map[int32]string),
		fdInt: fd,
	}
	if s.depth == 0 {
		if _, err := w.addDir(s.dir); err != nil {
			w.f.Close()
			return nil, err
		}
	}
	go w.run()
	return w, nil
}

// addDir counts one more need of dir's watch, adding it if it is the
// first; added says so.
func (w *filesWatcher) addDir(dir string) (added bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d, ok := w.dirs[dir]; ok {
		d.refs++
		return false, nil
	}
	wd, err := unix.InotifyAddWatch(w.fdInt, dir, filesWatchMask)
	if err != nil {
		// The path names the session directory, never an id: leaf
		// directories are one character of an id each, so they are
		// left out.
		return false, fmt.Errorf("inotify_add_watch under %s: %w", w.s.dir, err)
	}
	w.dirs[dir] = &watchedDir{wd: int32(wd), refs: 1}
	w.byWD[int32(wd)] = dir
	return true, nil
}

// releaseDir counts one need of dir's watch less, removing it at zero.
func (w *filesWatcher) releaseDir(dir string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, ok := w.dirs[dir]
	if !ok {
		return
	}
	if d.refs--; d.refs > 0 {
		return
	}
	delete(w.dirs, dir)
	delete(w.byWD, d.wd)
	// Its IN_IGNORED then finds no directory and is dropped.
	_, _ = unix.InotifyRmWatch(w.fdInt, uint32(d.wd))
}

// run reads events until close.
func (w *filesWatcher) run() {
	defer close(w.done)
	buf := make([]byte, filesWatchBuffer)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				w.s.reportWatchErr(fmt.Errorf("read inotify: %w", err))
				w.s.changedAll()
			}
			return
		}
		w.events(buf[:n])
	}
}

// events handles one read's events.
func (w *filesWatcher) events(b []byte) {
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			return
		}
		name := b[unix.SizeofInotifyEvent:end]
		for i, c := range name { // NUL-padded
			if c == 0 {
				name = name[:i]
				break
			}
		}
		b = b[end:]
		switch {
		case ev.Mask&unix.IN_Q_OVERFLOW != 0:
			// Events were lost: any watched session may have changed.
			w.s.changedAll()
			continue
		case ev.Mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
			w.dirGone(ev.Wd)
			continue
		}
		w.mu.Lock()
		dir, ok := w.byWD[ev.Wd]
		w.mu.Unlock()
		if ok && len(name) > 0 {
			w.s.changedFile(dir, string(name))
		}
	}
}

// dirGone handles a watched directory removed or moved: the sessions in it
// are gone or elsewhere, so every watched one is re-read; a later Watch of
// an id in it tries to watch it again.
func (w *filesWatcher) dirGone(wd int32) {
	w.mu.Lock()
	dir, ok := w.byWD[wd]
	if ok {
		delete(w.byWD, wd)
		delete(w.dirs, dir)
		_, _ = unix.InotifyRmWatch(w.fdInt, uint32(wd))
	}
	w.mu.Unlock()
	if ok {
		w.s.reportWatchErr(errors.New("a watched session directory was removed or moved"))
		w.s.changedAll()
	}
}

// close stops the reader and waits for it; it closes the inotify instance,
// which drops every watch.
func (w *filesWatcher) close() {
	w.once.Do(func() {
		w.f.Close()
		<-w.done
	})
}
