// Package acme is the GosWebSocketBundle sample application ported to the
// wsgate handler SDK: an RPC handler "acme.rpc" with a "sum" method and a
// chat-like topic handler "acme.topic", plus "acme.jobs" (jobs.go), whose
// "countdown" shows progressive call results and call canceling.
//
// The gateway binary does not compile it in: examples/acme/plugin wraps it
// as a Go plugin (`make plugins` builds bin/plugins/acme.so), loaded with
// `plugins: [bin/plugins/acme.so]` in a config at the repository root (a
// relative path is taken from the config file's directory). It imports
// only wamp/handler, so tests can also register it in-process. Routes for it are in routes.yaml beside
// this file:
//
//	routes:
//	  rpc:
//	    acme_rpc:
//	      pattern: "sample/{method}"
//	      handler: acme.rpc
//	    acme_jobs:
//	      pattern: "jobs/{method}"
//	      handler: acme.jobs
//	  topics:
//	    acme_topic:
//	      pattern: "acme/channel/{room}"
//	      handler: acme.topic
package acme

import (
	"context"
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/wsgate/wsgate/wamp/handler"
)

// Register adds the acme handlers to r. This is the shape every plugin
// exports.
func Register(r *handler.Registry) error {
	if err := r.AddRPC(RPC{}); err != nil {
		return err
	}
	if err := r.AddRPC(Jobs{}); err != nil {
		return err
	}
	if err := r.AddTopic(Topic{Clients: r.Clients()}); err != nil {
		return err
	}
	return r.AddTopic(Relay{Topic{Clients: r.Clients()}})
}

// RPC is the bundle's sample RPC service.
type RPC struct{}

// Name is the handler name routes refer to.
func (RPC) Name() string { return "acme.rpc" }

// Methods exposes "sum".
func (RPC) Methods() map[string]handler.RPCMethod {
	return map[string]handler.RPCMethod{"sum": Sum}
}

// Sum adds up the call's parameters like PHP's array_sum and returns
// {"result": sum}. Anonymous clients get the bundle sample's refusal as a
// normal result (not a CALLERROR), which is what existing clients expect.
func Sum(_ context.Context, c handler.Client, _ handler.Request, params json.RawMessage) (any, error) {
	if c.Anonymous() {
		return map[string]any{"error": true, "msg": "You must be authenticated to use this function."}, nil
	}
	return map[string]any{"result": arraySum(params)}, nil
}

// arraySum follows PHP's array_sum on a decoded JSON array or object:
// numbers and numeric strings add up, true counts 1, false/null/other
// strings count 0, nested arrays are skipped. The result stays an integer
// while every term is an integer and nothing overflows.
func arraySum(params json.RawMessage) json.Number {
	var values []json.RawMessage
	if len(params) > 0 && params[0] == '{' {
		var obj map[string]json.RawMessage
		if json.Unmarshal(params, &obj) != nil {
			return "0"
		}
		for _, v := range obj {
			values = append(values, v)
		}
	} else if json.Unmarshal(params, &values) != nil {
		return "0"
	}
	var isum int64
	var fsum float64
	isInt := true
	for _, raw := range values {
		term, ok := phpNumber(raw)
		if !ok {
			continue
		}
		if isInt {
			if i, err := strconv.ParseInt(term, 10, 64); err == nil {
				if s := isum + i; (i > 0 && s < isum) || (i < 0 && s > isum) {
					// int64 overflow: PHP switches to float too.
					isInt = false
					fsum = float64(isum) + float64(i)
				} else {
					isum = s
				}
				continue
			}
			isInt = false
			fsum = float64(isum)
		}
		f, err := strconv.ParseFloat(term, 64)
		if err != nil {
			continue
		}
		fsum += f
	}
	if isInt {
		return json.Number(strconv.FormatInt(isum, 10))
	}
	if math.IsInf(fsum, 0) || math.IsNaN(fsum) {
		return "0" // JSON cannot carry them; PHP's json_encode fails too
	}
	return json.Number(strconv.FormatFloat(fsum, 'g', -1, 64))
}

// numericString is PHP's numeric-string grammar (no hex, inf or nan,
// which Go's ParseFloat would accept).
var numericString = regexp.MustCompile(`^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$`)

// phpNumber returns the numeric text of a JSON value as PHP's + sees it.
func phpNumber(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case 't':
		return "1", true
	case 'f', 'n', '[', '{':
		return "", false
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		// PHP 8 numeric strings allow surrounding whitespace.
		s = strings.TrimSpace(s)
		if !numericString.MatchString(s) {
			return "", false
		}
		return s, true
	default:
		return string(raw), true
	}
}

// Topic is the bundle's sample topic: it announces joins and leaves and
// relays published events, each wrapped as {"msg": ...}. An event that is
// an object with a "username" string goes only to that user's connections
// (found with the ClientManipulator, as in the bundle's documentation), and
// the publisher gets an error when that user has no connection. It also
// accepts application pushes (handler.PushableTopic).
type Topic struct {
	// Clients finds the connections of a username; Register sets it from
	// the registry.
	Clients handler.ClientManipulator
}

var _ handler.PushableTopic = Topic{}

// Name is the handler name routes refer to.
func (Topic) Name() string { return "acme.topic" }

// OnSubscribe broadcasts "<connID> has joined <topic>" to every subscriber,
// the new one included.
func (Topic) OnSubscribe(_ context.Context, c handler.Client, t handler.TopicRef, _ handler.Request) error {
	return t.Broadcast(map[string]string{"msg": c.ConnID() + " has joined " + t.ID()}, nil, nil)
}

// OnUnsubscribe broadcasts "<connID> has left <topic>" to the remaining
// subscribers.
func (Topic) OnUnsubscribe(_ context.Context, c handler.Client, t handler.TopicRef, _ handler.Request) error {
	return t.Broadcast(map[string]string{"msg": c.ConnID() + " has left " + t.ID()}, nil, nil)
}

// OnPublish relays the event as {"msg": event}, honouring the publisher's
// exclude and eligible lists. When the event is an object naming a
// "username", only that user's connections are eligible; a username
// without connections is refused with a 404 handler.Error, which the
// publisher receives (CALLERROR for WAMP v1, ERROR for an acknowledged v2
// publish). That lookup is a Redis round trip with the shared client
// storage; a production handler relying on it there should implement
// handler.OffloadedTopic so it runs off the gateway's socket workers.
func (tp Topic) OnPublish(_ context.Context, _ handler.Client, t handler.TopicRef, _ handler.Request, event json.RawMessage, exclude, eligible []string) error {
	if user, ok := targetUser(event); ok {
		var conns []handler.Client
		if tp.Clients != nil {
			conns = tp.Clients.FindAllByUsername(user)
		}
		if len(conns) == 0 {
			return &handler.Error{Desc: "user " + strconv.Quote(user) + " is not connected", Code: 404}
		}
		eligible = make([]string, 0, len(conns))
		for _, c := range conns {
			eligible = append(eligible, c.SessionID())
		}
	}
	return t.Broadcast(map[string]json.RawMessage{"msg": event}, exclude, eligible)
}

// OnPush broadcasts an application push as {"msg": payload} to every
// subscriber.
func (Topic) OnPush(_ context.Context, t handler.TopicRef, _ handler.Request, payload json.RawMessage, _ string) error {
	return t.Broadcast(map[string]json.RawMessage{"msg": payload}, nil, nil)
}

// Relay is acme.topic without the join and leave announcements: a plain
// publish/subscribe channel. Announcing every join to every subscriber
// costs N(N+1)/2 events when N clients subscribe, which dominates large
// rooms (and the broadcast benchmark); a relay stays linear.
type Relay struct{ Topic }

// Name is the handler name routes refer to.
func (Relay) Name() string { return "acme.relay" }

// OnSubscribe announces nothing.
func (Relay) OnSubscribe(context.Context, handler.Client, handler.TopicRef, handler.Request) error {
	return nil
}

// OnUnsubscribe announces nothing.
func (Relay) OnUnsubscribe(context.Context, handler.Client, handler.TopicRef, handler.Request) error {
	return nil
}

// targetUser returns the "username" of an event object.
func targetUser(event json.RawMessage) (string, bool) {
	if len(event) == 0 || event[0] != '{' {
		return "", false
	}
	var e struct {
		Username *string `json:"username"`
	}
	if json.Unmarshal(event, &e) != nil || e.Username == nil {
		return "", false
	}
	return *e.Username, true
}
