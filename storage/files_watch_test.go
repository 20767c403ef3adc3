package storage

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestParseSavePath(t *testing.T) {
	tests := []struct {
		in      string
		dir     string
		depth   int
		wantErr bool
	}{
		{"/var/lib/php/sessions", "/var/lib/php/sessions", 0, false},
		{"2;/tmp/x", "/tmp/x", 2, false},
		{"0;/tmp/x", "/tmp/x", 0, false},
		{"3;0600;/tmp/x", "/tmp/x", 3, false},
		{"1;0777;/tmp/a;b", "/tmp/a;b", 1, false}, // PHP splits at two semicolons only
		{"255;/tmp/x", "/tmp/x", 255, false},
		{"256;/tmp/x", "", 0, true}, // no id is longer than 256
		{"-1;/tmp/x", "", 0, true},
		{"+1;/tmp/x", "", 0, true},
		{"x;/tmp/x", "", 0, true},
		{";/tmp/x", "", 0, true},
		{"2;", "", 0, true},
		{"2;0600;", "", 0, true},
		{"2;0800;/tmp/x", "", 0, true},  // not octal
		{"2;17777;/tmp/x", "", 0, true}, // over 07777
	}
	for _, tt := range tests {
		dir, depth, err := ParseSavePath(tt.in)
		if (err != nil) != tt.wantErr || dir != tt.dir || depth != tt.depth {
			t.Errorf("ParseSavePath(%q) = %q, %d, %v; want %q, %d, err %v", tt.in, dir, depth, err, tt.dir, tt.depth, tt.wantErr)
		}
	}
	if _, err := NewFilesStore(FilesOptions{Dir: "2;" + t.TempDir(), Depth: 3}); err == nil {
		t.Error("NewFilesStore took Depth 3 with a save path of 2 levels")
	}
}

// watchErrs collects OnWatchError's reports.
type watchErrs struct {
	mu   sync.Mutex
	errs []error
}

func (w *watchErrs) add(err error) { w.mu.Lock(); w.errs = append(w.errs, err); w.mu.Unlock() }
func (w *watchErrs) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) > 0 {
		t.Fatalf("watch errors: %v", w.errs)
	}
}

func skipUnlessInotify(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("inotify is Linux only")
	}
}

// TestFilesWatch: logout (unlink), a write, and a rename onto the name are
// reported for watched ids only, without any read.
func TestFilesWatch(t *testing.T) {
	skipUnlessInotify(t)
	dir := t.TempDir()
	data := []byte("a|i:1;")
	for _, id := range []string{"watchA", "watchB", "watchC"} {
		writeSessionFile(t, filepath.Join(dir, "sess_"+id), data, time.Now())
	}
	// Opened after the writes, whose events would otherwise arrive late.
	var errs watchErrs
	s := openFilesStore(t, FilesOptions{Dir: dir, Watch: true, OnWatchError: errs.add})
	s.Watch("watchA", s.Mark())
	s.Watch("watchC", s.Mark())
	if err := os.Remove(filepath.Join(dir, "sess_watchB")); err != nil { // not watched
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "sess_watchA")); err != nil {
		t.Fatal(err)
	}
	if ids, all := nextChange(t, s); all || !slices.Equal(ids, []string{"watchA"}) {
		t.Fatalf("after unlink: %v, all %v", ids, all)
	}
	writeSessionFile(t, filepath.Join(dir, "sess_watchC"), []byte("a|i:2;"), time.Now())
	if waitChangeOf(t, s, "watchC") {
		t.Fatal("write reported all")
	}
	tmp := filepath.Join(dir, "tmp")
	writeSessionFile(t, tmp, data, time.Now())
	if err := os.Rename(tmp, filepath.Join(dir, "sess_watchC")); err != nil {
		t.Fatal(err)
	}
	if waitChangeOf(t, s, "watchC") {
		t.Fatal("rename reported all")
	}
	s.Unwatch("watchC")
	s.Unwatch("watchA")
	os.Remove(filepath.Join(dir, "sess_watchC"))
	s.Watch("watchD", s.Mark())
	writeSessionFile(t, filepath.Join(dir, "sess_watchD"), data, time.Now())
	if ids, _ := nextChange(t, s); !slices.Equal(ids, []string{"watchD"}) {
		t.Fatalf("got %v, want only watchD", ids)
	}
	errs.check(t)
}

// TestFilesWatchLevelsPHP: with save_path "2;dir", real PHP (Symfony's
// NativeFileSessionHandler) writes dir/a/b/sess_ab...; the store reads it
// from the save_path form, watches the leaf directory lazily (reporting
// the id once when the watch is new) and sees the unlink.
func TestFilesWatchLevelsPHP(t *testing.T) {
	skipUnlessInotify(t)
	dir := t.TempDir()
	const id = "abwatchlevels0123456789"
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "c", "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	got := writeSessionPHP(t, map[string]any{"store": "files", "dir": "2;" + dir, "id": id, "user": "bob", "roles": []string{"ROLE_USER"}, "firewall": "main"})
	if got != id {
		t.Fatalf("PHP wrote %q, want %q", got, id)
	}
	if _, err := os.Stat(filepath.Join(dir, "a", "b", "sess_"+id)); err != nil {
		t.Fatalf("PHP did not lay the session out in levels: %v", err)
	}
	var errs watchErrs
	s := openFilesStore(t, FilesOptions{Dir: "2;" + dir, Watch: true, OnWatchError: errs.add})
	if data, err := s.Read(context.Background(), id); err != nil || len(data) == 0 {
		t.Fatalf("Read = %q, %v", data, err)
	}
	s.Watch(id, s.Mark())
	if ids, all := nextChange(t, s); all || !slices.Equal(ids, []string{id}) {
		t.Fatalf("new leaf watch: %v, all %v; want the id once", ids, all)
	}
	// A session in another leaf directory is not watched.
	writeSessionFile(t, filepath.Join(dir, "c", "d", "sess_cdother"), []byte("x"), time.Now())
	if err := os.Remove(filepath.Join(dir, "a", "b", "sess_"+id)); err != nil {
		t.Fatal(err)
	}
	if ids, all := nextChange(t, s); all || !slices.Equal(ids, []string{id}) {
		t.Fatalf("after unlink: %v, all %v", ids, all)
	}
	s.Unwatch(id)
	s.watcher.mu.Lock()
	left := len(s.watcher.dirs)
	s.watcher.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d leaf watches left after the last Unwatch", left)
	}
	errs.check(t)
}

// TestFilesWatchUnreadableDir: a directory the process cannot read cannot
// be watched; the store still opens and reads, and says why.
func TestFilesWatchUnreadableDir(t *testing.T) {
	skipUnlessInotify(t)
	if os.Geteuid() == 0 {
		t.Skip("root reads any directory")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o300); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	var errs watchErrs
	openFilesStore(t, FilesOptions{Dir: dir, Watch: true, OnWatchError: errs.add})
	if len(errs.errs) == 0 {
		t.Fatal("no watch error for an unreadable directory")
	}
}
