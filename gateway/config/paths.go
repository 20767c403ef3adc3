package config

import (
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// fileKeys are the keys whose values are paths on the gateway's file
// system (a list key: each item). A relative one written in a config file
// is taken from the file's directory, so that a config works whatever
// directory the gateway starts in (`wsgate config check --config
// examples/acme/routes.yaml` from anywhere). One set by a WSGATE_*
// variable stays as typed, relative to the working directory, as a shell
// user expects of a path given on the command line.
//
// Paths inside a DSN (libpq's sslrootcert, sslcert, sslkey; a Unix socket)
// are not rewritten: the DSN is the app's, pasted as is, and its driver
// reads them from the working directory (docs/configuration.md says so).
var fileKeys = []string{
	"plugins",
	"session.symfony_security_yaml",
	keySessionFilesPath,
}

// keySessionFilesPath is the file key holding a PHP save path ("N;/path").
const keySessionFilesPath = "session.files.path"

// resolvePaths rewrites the relative paths of fileKeys in root against
// baseDir; nodes that came from the environment are left alone.
func (d *decoder) resolvePaths(root *yaml.Node, baseDir string) {
	if baseDir == "" {
		return
	}
	for _, key := range fileKeys {
		n := nodeAt(root, key)
		if n == nil {
			continue
		}
		savePath := key == keySessionFilesPath
		var scalars []*yaml.Node
		switch n.Kind {
		case yaml.ScalarNode:
			scalars = []*yaml.Node{n}
		case yaml.SequenceNode:
			scalars = n.Content
		}
		for _, s := range scalars {
			if _, fromEnv := d.envOf[s]; fromEnv || s.Kind != yaml.ScalarNode || s.Tag == "!!null" {
				continue
			}
			if savePath {
				s.Value = resolveSavePath(s.Value, baseDir)
			} else {
				s.Value = resolvePath(s.Value, baseDir)
			}
		}
	}
}

// resolvePath joins a relative p to baseDir; "" and absolute paths stay.
func resolvePath(p, baseDir string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(baseDir, p)
}

// resolveSavePath resolves the directory of PHP's session.save_path
// ("/path", "N;/path" or "N;MODE;/path"), keeping its N and MODE, which
// storage.ParseSavePath reads: it splits at the first two semicolons only.
func resolveSavePath(savePath, baseDir string) string {
	n, rest, ok := strings.Cut(savePath, ";")
	if !ok {
		return resolvePath(savePath, baseDir)
	}
	if mode, dir, ok := strings.Cut(rest, ";"); ok {
		return n + ";" + mode + ";" + resolvePath(dir, baseDir)
	}
	return n + ";" + resolvePath(rest, baseDir)
}
