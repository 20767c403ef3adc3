// Command badsig is a broken wsgate plugin for the plugins tests: its
// Register lacks the error result.
package main

import "github.com/wsgate/wsgate/wamp/handler"

// Register has the wrong signature on purpose.
func Register(r *handler.Registry) {}

func main() {}
