// Package wamp implements WAMP v1 as Ratchet 0.4 and GosWebSocketBundle
// speak it, and the WAMP v2 basic profile for callers, publishers and
// subscribers (JSON, MessagePack and CBOR serialization), on one router: the message protocols,
// URI routing to handlers with access rules, and the topic broker. A v1
// publisher reaches v2 subscribers of the same topic and the other way
// round. Handlers are written against package wamp/handler only.
//
// # Files
//
// node.go: the Node, its configuration, opening sessions, the client
// index. session.go: the Session core (lifecycle, Handle, invoking
// handlers, sending); subscriptions.go: its subscriptions; requests.go:
// the steps of a CALL, SUBSCRIBE or PUBLISH both protocols take. v1.go and
// v2.go: one protocol each, its messages and its handlers; json.go: the
// JSON codec both use; serializer.go: msgpack and CBOR, transcoded to and
// from JSON at a v2 session's edge. broker.go: topics, fan-out, periodic topics;
// audience.go: who of a topic's subscribers a broadcast selects; meta.go:
// the v2 session meta API; cancel.go: v2 progressive call results and
// call canceling; pattern.go: v2 pattern-based subscriptions; retain.go:
// v2 event retention; meta_events.go: the meta API's events and
// subscription procedures; presence.go: presence of RouteConfig.Presence
// topics (companion topics, wsgate.presence.list, PresenceDirectory).
// router.go: route patterns; handlers.go: the registered handlers bound to
// routes. offload.go: handler work off the reader; reidentify.go: identity
// changes; push.go: application pushes; relay.go: other replicas;
// limits.go: Limits and LimitError; errors.go: what else Handle returns;
// protocol.go: Protocol; observer.go: metrics. Tests sit in the file named
// for what they test (requests.go's steps through v1_test.go and
// v2_test.go), fuzz targets beside the parsers; helpers_test.go holds the
// fixtures.
//
// # Use from the gateway
//
// At start-up:
//
//	reg := handler.NewRegistry()
//	acme.Register(reg)                 // every plugin's Register
//	node, err := wamp.NewNode(wamp.NodeConfig{
//		ServerIdent: "wsgate",
//		Routes:      cfg.Routes,        // wamp.RoutesConfig from YAML `routes:`
//		Handlers:    reg,
//		Logger:      logger,
//		Realm:       cfg.WAMP.Realm,    // v2 realm; "" accepts any
//		Observer:    promObserver,      // metrics; nil discards
//	})                                  // fail start-up on err: it names the bad route
//
// Gauges (sessions per protocol, topics, subscriptions) come from
// Node.Stats; application pushes go through Node.Push.
//
// Per websocket connection, the subprotocol picks the protocol: accept the
// first offered subprotocol for which ProtocolFor returns true ("wamp",
// "wamp.2.json", "wamp.2.msgpack", "wamp.2.cbor"), serve ProtocolV1 when
// none is offered (as Ratchet does), and refuse the handshake when only
// others are offered. For a Protocol.Binary session, messages travel in
// binary frames both ways: the Peer sends binary frames and Handle gets
// the binary messages. Then:
//
//	s := node.OpenProtocol(peer, wamp.ClientInfo{...}, proto)
//	                                             // v1: sends WELCOME; v2: waits for HELLO
//	defer s.Close()                              // always, however the connection ends
//	for each message msg {                       // text, or binary for Protocol.Binary
//		if err := s.Handle(connCtx, msg); err != nil {
//			if errors.Is(err, wamp.ErrProtocol) { close with 1007 }  // as Ratchet
//			if errors.Is(err, wamp.ErrGoodbye) { close with 1000 }   // v2 GOODBYE/ABORT
//			break                                 // ErrClosed: already closing
//		}
//	}
//
// Node.Open(peer, info) is OpenProtocol(peer, info, ProtocolV1).
//
// When revalidation finds that the PHP session behind a live connection
// changed (expired, logged out, another user) and the client is to be kept,
// s.Reidentify(newInfo) gives it the new identity (a ClientInfo whose
// Identity is anonymous, to downgrade) and revokes the subscriptions the
// new identity may no longer have; it may be called from any goroutine.
//
// Handle must be called from one goroutine per session (the reader) and
// may block while a handler runs, bounded by NodeConfig.CallTimeout;
// replies to one client therefore keep Ratchet's in-order behaviour.
// Peer.Send must never block and must not call back into the Session; it
// may be called from any goroutine, including other sessions' readers
// during a broadcast. Binary messages are neither WAMP v1 nor
// wamp.2.json; the gateway should treat them as Ratchet does (close), and
// text messages on a msgpack or CBOR session the same way.
//
// # Goroutines
//
// The node starts goroutines only for handler.PeriodicTopic handlers: one
// per topic that has subscribers, started by the first SUBSCRIBE and
// stopped (its context cancelled) when the last subscriber leaves; it
// never holds a node lock while OnTick runs. Offloaded handler work (the
// calls of a handler.OffloadedRPC, the callbacks of a
// handler.OffloadedTopic, the unsubscribes a disconnect leaves) runs on
// the NodeConfig.Offloader, whose goroutines the gateway owns. Everything
// else runs on the caller's goroutine: Handle on the connection reader,
// Push on the pusher, Reidentify on its caller (or on the reader, for
// callbacks that must wait for a Handle call in flight).
//
// # WAMP v2
//
//   - HELLO must be the first message; WELCOME [2, session, details] gives
//     the realm, authid (the Symfony username, or "anon-<session>"),
//     authrole (the first Symfony role, "anonymous" for anonymous
//     clients, "authenticated" for a user without roles), authmethod
//     "cookie", authextra {roles, firewall, anonymous} and the broker and
//     dealer roles. A HELLO for another realm than NodeConfig.Realm gets
//     ABORT wamp.error.no_such_realm and Handle returns ErrGoodbye.
//   - Ids: session and publication ids are random in [1, 2^53] (global
//     scope); subscription ids are sequential per node (router scope) and
//     shared by all subscribers of a topic, so one EVENT encoding serves
//     them all; request ids from the client must be in [1, 2^53].
//   - GOODBYE is answered with GOODBYE wamp.close.goodbye_and_out, ABORT
//     is accepted; both end the session (its subscriptions go as on
//     Close) and Handle returns ErrGoodbye.
//   - msgpack and CBOR sessions: each message is transcoded to the JSON a
//     wamp.2.json client would send, and everything below applies to it
//     (the same checks and Limits; nesting over MaxJSONDepth is that
//     limit). Integers map exactly (int64 and uint64), binary to WAMP's
//     "\u0000"+base64 JSON strings and back; what JSON cannot carry
//     (extensions, tags, NaN, non-string map keys) is invalid input. A
//     fan-out encodes an EVENT once per serializer that has subscribers,
//     with one publication id for all.
//   - Input that is not valid v2 JSON, an unknown or router-only message
//     type, callee messages (ERROR, YIELD), a second HELLO, or anything
//     before HELLO gets ABORT wamp.error.protocol_violation and an error
//     wrapping ErrProtocol. REGISTER and UNREGISTER get ERROR
//     wamp.error.not_authorized: the node is not a dealer for callees.
//     CANCEL: see CALL.
//   - CALL: routing as for v1 (rpc routes, method from the route's method
//     attribute). Params follow Ratchet's rule on the positional
//     arguments, or are the keyword arguments when there are no
//     positional ones (also in handler.Request.Kwargs). RESULT carries the
//     handler's result as its single positional argument. Errors: no
//     route or no method → wamp.error.no_such_procedure; access rule →
//     wamp.error.not_authorized; handler error → its handler.Error URI or
//     wamp.error.runtime_error, with [description] and kwargs {"code",
//     "details"}; a nil or false result → wamp.error.runtime_error "RPC
//     Error". With the option receive_progress, each handler.Progress of
//     the handler is a RESULT [50, request, {"progress": true}, [value]]
//     before the final answer, never after it. CANCEL [49, request,
//     {"mode"}] of a running call (cancel.go): killnowait → ERROR
//     wamp.error.canceled at once, the handler's ctx cancelled, its answer
//     discarded; kill → ctx cancelled, the answer when the handler returns
//     (wamp.error.canceled if it failed, else its RESULT); skip → ERROR at
//     once, the handler runs on, its answer discarded; no mode → ctx
//     cancelled and nothing more sent (autobahn-js has already rejected
//     the call). A CANCEL of an unknown or finished call, or with another
//     mode, is ignored. A call that does not run offloaded has ended
//     before the reader reads the CANCEL. The option timeout (ms) ends a
//     call without a result in time (between results, with progress) as
//     killnowait does, with ERROR wamp.error.timeout. WELCOME announces
//     progressive_call_results, call_canceling and call_timeout.
//   - Session meta API, when NodeConfig.MetaAPI enables it (WELCOME then
//     announces session_meta_api): CALLs of wamp.session.count and
//     wamp.session.list (optional filter_authroles, matched as
//     eligible_authrole), wamp.session.get (session id → session,
//     authid, authrole, authmethod, authprovider, or
//     wamp.error.no_such_session) and wamp.subscription.count_subscribers
//     (subscription id → the topic's v1 and v2 subscribers, or
//     wamp.error.no_such_subscription) are answered by the node from its
//     own joined v2 sessions and subscribers, per replica, ahead of the
//     routes; a caller the setting does not admit gets
//     wamp.error.not_authorized. Disabled, these URIs are routed as any.
//   - SUBSCRIBE: match exact (the default), prefix or wildcard (pattern.go:
//     no route needed, each delivered topic checked against the access
//     a direct SUBSCRIBE would have, no handler callback; another match
//     policy → wamp.error.invalid_argument); get_retained sends the
//     topic's retained event after SUBSCRIBED (retain.go); no route →
//     wamp.error.invalid_uri;
//     access rule → wamp.error.not_authorized. SUBSCRIBED is sent before
//     the topic handler's OnSubscribe, so the client sees its own join
//     broadcast as a v1 client does; if OnSubscribe fails, the
//     subscription is revoked with UNSUBSCRIBED [35, 0, {"subscription",
//     "reason"}] (which autobahn understands). Subscribing again returns
//     the same subscription id. UNSUBSCRIBE of an unknown id →
//     wamp.error.no_such_subscription.
//   - PUBLISH goes through the topic handler's OnPublish like a v1
//     PUBLISH (see handler.Topic for how arguments map to the event and
//     the options to session ids); exclude_me defaults to true as the
//     spec says. exclude/eligible take session ids as numbers (v2) or
//     strings (v1); exclude_authid/eligible_authid select users and
//     exclude_authrole/eligible_authrole roles, on every replica (see
//     Audiences below). Errors (no route → wamp.error.invalid_uri, access
//     → wamp.error.not_authorized, handler failure) and PUBLISHED (with a
//     random publication id) are sent only when the publisher asked for
//     acknowledge; invalid options (a list element that is no session id
//     included) always get wamp.error.invalid_argument.
//     disclose_me asks for publisher identification, which the topic
//     route's RouteConfig.Disclose allows (default), forces or forbids.
//   - EVENT [36, subscription, publication, details, [event]] carries the
//     handler's broadcast value as the single positional argument.
//     details are {} unless the publisher is disclosed: then the
//     broadcasts the handler makes through its OnPublish TopicRef carry
//     publisher, publisher_authid and publisher_authrole, on this replica
//     (the Relay does not carry them).
//
// # Audiences
//
// A broadcast selects its recipients with an Audience: session ids, user
// identifiers and roles to exclude, and ones eligible. A subscriber is
// excluded when its session id, its user (never an anonymous client's
// "anon-<session>") or one of its roles (plus the v2 authrole
// "anonymous" or "authenticated" when its roles do not name one) is
// excluded; when an eligible list is non-empty, only subscribers matching
// one eligible entry get it. The Audience travels with the broadcast to
// the other replicas (Relay.Publish, Node.DeliverRelayed), and each node
// selects its own subscribers, so users and roles reach clients wherever
// they are connected.
//
// Topic handlers see session ids only: OnPublish gets the v2 options'
// users and roles expanded against this node's sessions. The TopicRef
// OnPublish gets remembers the publish's Audience, and a Broadcast with
// the very exclude and eligible slices OnPublish got (the same backing
// arrays and lengths, not equal copies) carries it whole; lists of the
// handler's own select exactly those sessions. The push API's user
// lists go through Node.BroadcastTo the same way.
//
// # Behaviour
//
// Message handling follows Ratchet's ServerProtocol and TopicManager and
// the bundle's WampApplication, RpcDispatcher and TopicDispatcher:
//
//   - WELCOME [0, sessionId, 1, serverIdent]; the session id is 128 random
//     bits in hex.
//   - PREFIX definitions expand CURIEs in CALL, SUBSCRIBE, UNSUBSCRIBE and
//     PUBLISH URIs as Ratchet 0.4's getUri: "p:x" becomes prefix + "#" + "x".
//   - CALL params: a single array or object argument is the params,
//     otherwise the argument list is. Results that are not arrays or
//     objects are wrapped in a one-element array; nil or false results
//     become CALLERROR "RPC Error" (500). Errors carry the bundle's details
//     {"code", "rpc": {}, "params", "request": {}}.
//   - SUBSCRIBE adds the client to the topic before OnSubscribe, so the
//     client sees its own join broadcast; UNSUBSCRIBE removes it before
//     OnUnsubscribe. Duplicates are ignored, with no acknowledgement.
//   - PUBLISH never forwards by itself: the topic handler's OnPublish
//     decides. excludeMe=true becomes exclude=[own session id].
//     exclude/eligible elements that are integers in [0, 2^53] (v2
//     session ids as v2 clients write them) are taken as their decimal
//     form; other elements that are not strings are ignored (v1 has no
//     error reply; an eligible list left empty by this names nobody).
//   - A failing topic callback gets the bundle's CALLERROR with the topic
//     URI as call id and details {"code", "topic": {}, "request": {},
//     "event": "onSubscribe"|"onUnSubscribe"|"onPublish"}.
//   - Route access rules (RouteConfig.Roles, RouteConfig.Anonymous) are
//     checked before any handler: a refused CALL gets CALLERROR "Access
//     denied" with code 403; a refused SUBSCRIBE or PUBLISH gets the topic
//     CALLERROR above with code 403 and no subscription is kept (v1 has no
//     acknowledgement, and this is what a bundle client saw when a topic
//     handler refused by throwing).
//
// Deliberate differences from the PHP stack, each because the PHP
// behaviour was a bug or a hazard:
//
//   - A CALL with no matching route gets CALLERROR 404 `Unable to find
//     route for "<uri>"`; the bundle threw and the client waited forever.
//   - A SUBSCRIBE or PUBLISH with no matching route is logged and ignored
//     without keeping a subscription (no handler could ever serve it).
//   - A failing OnSubscribe undoes the subscription, so handlers can refuse
//     clients; Ratchet kept them subscribed after the exception.
//   - The 2.x bundle re-broadcast a PUBLISH verbatim to everyone when its
//     topic handler failed; that bypasses the handler, so it is not done.
//   - Handler panics are recovered and reported as "Internal Server Error"
//     without the panic text.
//   - The ClientManipulator looks across all connections, not one topic's
//     subscribers; Broadcast's eligible list restricts delivery to
//     subscribers anyway.
//   - Malformed input is rejected more strictly than PHP's loose typing:
//     URIs must be strings, message types plain integers, arities exact.
//   - Placeholders are whole path segments; the PHP router also allowed
//     "user-{id}" and requirements spanning "/".
//   - Client limits (Limits) close abusive clients instead of letting them
//     grow server memory.
//   - On disconnect, OnUnsubscribe runs after the client was removed from
//     the topic (the bundle ran it while the closing client was still
//     listed), so Count excludes the leaver in both paths.
//   - A client's identity can change while it is connected
//     (Session.Reidentify, after session revalidation); the bundle kept the
//     identity of the handshake until the client reconnected.
package wamp
