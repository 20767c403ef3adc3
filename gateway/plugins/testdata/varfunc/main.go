// Command varfunc is a wsgate plugin for the plugins tests whose Register
// is a function variable rather than a function.
package main

import "github.com/wsgate/wsgate/wamp/handler"

type rpc struct{}

func (rpc) Name() string                          { return "varfunc.rpc" }
func (rpc) Methods() map[string]handler.RPCMethod { return nil }

// Register adds varfunc.rpc; it fails when the name is taken.
var Register = func(r *handler.Registry) error { return r.AddRPC(rpc{}) }

func main() {}
