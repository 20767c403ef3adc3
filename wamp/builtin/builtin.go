// Package builtin holds the topic handlers every wsgate binary has, so
// that a gateway is useful without writing Go: routes name them like any
// plugin's handler.
//
//   - wsgate.relay: a plain publish/subscribe channel. A client's PUBLISH
//     goes, as published, to the topic's subscribers (the publisher's
//     exclude and eligible lists honoured, users and roles on every
//     replica included), and the app can push to it.
//   - wsgate.user: a per-user channel. Its route's pattern must have a
//     {username} placeholder (checked at start); a client may subscribe
//     only where it equals its own user identifier, never anonymously,
//     and is unsubscribed when its session stops being that user. Clients
//     cannot publish; the app pushes (POST /api/publish, the Redis push
//     channel), which reaches the user on whichever replica it is.
//   - wsgate.push: topics only the app publishes to. Clients subscribe
//     within the route's access rules; their publishes are refused.
//
// Events carry the published or pushed JSON value as is. The package
// imports only the handler SDK, as a plugin would.
package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/wsgate/wsgate/wamp/handler"
)

// Handler names, as routes name them.
const (
	RelayName = "wsgate.relay"
	UserName  = "wsgate.user"
	PushName  = "wsgate.push"
)

// UserPlaceholder is the placeholder a wsgate.user route's pattern must
// have: the user identifier of the channel's only subscriber.
const UserPlaceholder = "username"

// errNotAuthorized is the refusal the SDK maps to what each protocol
// expects: the v1 bundle-shaped CALLERROR with code 403, the v2 ERROR
// wamp.error.not_authorized (for an acknowledged PUBLISH).
func errNotAuthorized(desc string) error {
	return &handler.Error{URI: "wamp.error.not_authorized", Desc: desc, Code: 403}
}

// Topics returns the built-in topic handlers.
func Topics() []handler.Topic { return []handler.Topic{Relay{}, User{}, Push{}} }

// Register adds the built-in handlers r does not have yet, so that it can
// be called on a registry a caller may already have filled. The gateway
// calls it before it loads plugins, so a plugin cannot take their names.
func Register(r *handler.Registry) error {
	var errs []error
	for _, h := range Topics() {
		if _, ok := r.Topic(h.Name()); ok {
			continue
		}
		if err := r.AddTopic(h); err != nil {
			errs = append(errs, fmt.Errorf("built-in handlers: %w", err))
		}
	}
	return errors.Join(errs...)
}

// pushOnly is the shared part of the handlers clients cannot publish to:
// nothing on subscribe or unsubscribe, publishes refused, pushes
// broadcast as they came.
type pushOnly struct{}

// OnSubscribe does nothing: the route's access rules already admitted the
// client.
func (pushOnly) OnSubscribe(context.Context, handler.Client, handler.TopicRef, handler.Request) error {
	return nil
}

// OnUnsubscribe does nothing.
func (pushOnly) OnUnsubscribe(context.Context, handler.Client, handler.TopicRef, handler.Request) error {
	return nil
}

// OnPublish refuses: only the app publishes here.
func (pushOnly) OnPublish(context.Context, handler.Client, handler.TopicRef, handler.Request, json.RawMessage, []string, []string) error {
	return errNotAuthorized("clients cannot publish to this topic")
}

// OnPush broadcasts the payload as is to every subscriber.
func (pushOnly) OnPush(_ context.Context, t handler.TopicRef, _ handler.Request, payload json.RawMessage, _ string) error {
	return t.Broadcast(payload, nil, nil)
}

// Relay is wsgate.relay: clients' publishes and the app's pushes go to the
// topic's subscribers as they are. It announces no joins or leaves.
type Relay struct{ pushOnly }

var _ handler.PushableTopic = Relay{}

// Name is the handler name routes refer to.
func (Relay) Name() string { return RelayName }

// OnPublish broadcasts the event as published. exclude and eligible are
// passed on untouched (the very slices), so the broadcast carries the
// publish's whole audience: v2 users and roles on other replicas too.
func (Relay) OnPublish(_ context.Context, _ handler.Client, t handler.TopicRef, _ handler.Request, event json.RawMessage, exclude, eligible []string) error {
	return t.Broadcast(event, exclude, eligible)
}

// Push is wsgate.push: the app publishes, clients only subscribe.
type Push struct{ pushOnly }

var _ handler.PushableTopic = Push{}

// Name is the handler name routes refer to.
func (Push) Name() string { return PushName }

// User is wsgate.user: a channel per user, which only that user may
// subscribe to and only the app publishes to.
type User struct{ pushOnly }

var (
	_ handler.PushableTopic       = User{}
	_ handler.SubscribeAuthorizer = User{}
	_ handler.RouteChecker        = User{}
)

// Name is the handler name routes refer to.
func (User) Name() string { return UserName }

// CheckRoute refuses a route without a {username} placeholder: without it
// every user's channel would be the same topic.
func (User) CheckRoute(r handler.Route) error {
	if !slices.Contains(r.Placeholders, UserPlaceholder) {
		return errors.New(UserName + " needs a {" + UserPlaceholder + "} placeholder in the pattern (e.g. user/{" + UserPlaceholder + "}), got " + r.Pattern)
	}
	return nil
}

// MaySubscribe admits an authenticated client to the channel its URI names
// and nobody else; the node asks before subscribing and again whenever the
// client's identity changes, so a logout ends the subscription.
func (User) MaySubscribe(who handler.Identity, req handler.Request) bool {
	name, ok := req.Attributes[UserPlaceholder]
	return ok && !who.Anonymous && who.UserIdentifier != "" && name == who.UserIdentifier
}
