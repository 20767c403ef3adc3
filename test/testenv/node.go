package testenv

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// NodeJS is a Node.js runtime found by Node.
type NodeJS struct {
	// Bin is the path of the node binary (WSGATE_TEST_NODE overrides it).
	Bin string
	// Args go before the script: "--experimental-websocket" on Node 20
	// and 21, whose global WebSocket (which autobahn 26 uses) is behind a
	// flag; nothing on Node 22 and later.
	Args []string
	// NPM is the path of the npm binary.
	NPM string
}

var (
	nodeOnce sync.Once
	nodeVal  NodeJS
	nodeErr  error
)

// Node returns the Node.js runtime and npm, or skips/fails t when either
// is missing or the runtime has no WebSocket client at all.
func Node(t testing.TB) NodeJS {
	t.Helper()
	nodeOnce.Do(func() { nodeVal, nodeErr = findNode() })
	if nodeErr != nil {
		Missing(t, "Node.js with npm", nodeErr)
	}
	return nodeVal
}

func findNode() (NodeJS, error) {
	bin := os.Getenv("WSGATE_TEST_NODE")
	if bin == "" {
		bin = "node"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return NodeJS{}, err
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return NodeJS{}, err
	}
	n := NodeJS{Bin: path, NPM: npm}
	probe := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, path, append(args, "-e", "process.stdout.write(typeof WebSocket)")...).Output()
		return strings.TrimSpace(string(out)), err
	}
	if got, err := probe(); err != nil {
		return NodeJS{}, err
	} else if got == "function" {
		return n, nil
	}
	got, err := probe("--experimental-websocket")
	if err != nil || got != "function" {
		return NodeJS{}, &exec.Error{Name: path, Err: errNoWebSocket}
	}
	n.Args = []string{"--experimental-websocket"}
	return n, nil
}

type noWebSocket struct{}

func (noWebSocket) Error() string {
	return "node has no global WebSocket, even with --experimental-websocket (need Node >= 20.10)"
}

var errNoWebSocket error = noWebSocket{}
