// Command plugin is the acme example handlers (acme.rpc, acme.jobs,
// acme.topic, acme.relay) as a wsgate Go plugin. Build it with the same Go version,
// build flags (-race included) and wsgate version as the gateway:
//
//	go build -buildmode=plugin -o bin/plugins/acme.so ./examples/acme/plugin
//
// and list it in the gateway config (a relative path is taken from the
// config file's directory; this is a config at the repository root):
//
//	plugins: [bin/plugins/acme.so]
//
// The handlers themselves live in package acme, which stays importable so
// tests can register them in-process.
package main

import (
	"github.com/wsgate/wsgate/examples/acme"
	"github.com/wsgate/wsgate/wamp/handler"
)

// Register is the symbol the gateway looks up in every plugin
// (gateway/plugins.Load) and calls once at start-up, before the WAMP node
// is built: it adds the acme handlers to r.
func Register(r *handler.Registry) error { return acme.Register(r) }

// main is never run: a plugin's main function is ignored by the loader.
// It exists so that `go build ./...` and `go vet ./...`, which link every
// main package as a program, accept this one.
func main() {}
