package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/wsgate/wsgate/wamp/handler"
)

// ErrNoRoute is returned by Push for a URI no topic route matches.
var ErrNoRoute = errors.New("wamp: no topic route for the URI")

// ErrNotPushable is returned by Push when the topic handler of the URI
// does not implement handler.PushableTopic.
var ErrNotPushable = errors.New("wamp: topic handler does not accept pushes")

// Push delivers an application push (the bundle's pusher) to the topic
// handler of uri: it matches uri against the topic routes and calls the
// handler's OnPush, which broadcasts what it wants. Access rules do not
// apply (the push comes from the application, not a client). provider
// names the source for the handler ("http", "redis", ...). The call is
// bounded by NodeConfig.CallTimeout; a handler panic is recovered and
// returned as an error. Push is safe for concurrent use. What the handler
// broadcasts also reaches the other replicas when the node has a Relay.
func (n *Node) Push(ctx context.Context, uri string, payload json.RawMessage, provider string) error {
	return n.push(ctx, uri, payload, provider, false, false)
}

// PushRetained is Push (local: PushLocal) that also keeps what the
// handler broadcasts without an audience as the topic's retained event
// (event retention, retain.go).
func (n *Node) PushRetained(ctx context.Context, uri string, payload json.RawMessage, provider string, local bool) error {
	return n.push(ctx, uri, payload, provider, local, true)
}

// PushLocal is Push for a source every replica receives by itself (the
// Redis push channel): the handler's broadcasts reach this node's
// subscribers only, so that each replica delivers the push once.
func (n *Node) PushLocal(ctx context.Context, uri string, payload json.RawMessage, provider string) error {
	return n.push(ctx, uri, payload, provider, true, false)
}

func (n *Node) push(ctx context.Context, uri string, payload json.RawMessage, provider string, local, retain bool) (err error) {
	if !json.Valid(payload) {
		return errors.New("wamp: push payload is not valid JSON")
	}
	r, attrs, ok := n.topicRoutes.match(uri)
	if !ok {
		n.obs.RoutingMiss("topic")
		return fmt.Errorf("%w: %q", ErrNoRoute, uri)
	}
	p, ok := r.handler.topic.(handler.PushableTopic)
	if !ok {
		return fmt.Errorf("%w: route %q, handler %q", ErrNotPushable, r.name, r.handler.topic.Name())
	}
	if n.callTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.callTimeout)
		defer cancel()
	}
	defer func() {
		if rec := recover(); rec != nil {
			n.log.Error("wamp: push handler panic", "uri", uri, "route", r.name, "panic", fmt.Sprint(rec), "stack", string(debug.Stack()))
			err = fmt.Errorf("wamp: push to %q: %w", uri, errPanic)
		}
	}()
	ref := topicRef{n: n, uri: uri, local: local}
	if retain {
		ref.retain = &retainSpec{}
	}
	return p.OnPush(ctx, ref, handler.Request{Route: r.name, URI: uri, Attributes: attrs}, payload, provider)
}
