//go:build !linux

package storage

import "errors"

// filesWatcher stands in for the inotify watcher outside Linux, where the
// files store cannot watch: Watch reports it, and changes are only seen by
// polling (session.revalidate_interval).
type filesWatcher struct{}

// newFilesWatcher always fails outside Linux.
func newFilesWatcher(*FilesStore) (*filesWatcher, error) {
	return nil, errors.New("inotify is Linux only")
}

func (*filesWatcher) addDir(string) (bool, error) { return false, errors.New("inotify is Linux only") }
func (*filesWatcher) releaseDir(string)           {}
func (*filesWatcher) close()                      {}
