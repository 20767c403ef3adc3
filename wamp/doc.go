// Package wamp implements WAMP v1 as Ratchet 0.4 and GosWebSocketBundle
// speak it: the message protocol, URI routing to handlers, and the topic
// broker. Handlers are written against package wamp/handler only.
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
//	})                                  // fail start-up on err: it names the bad route
//
// Per websocket connection (subprotocol "wamp"):
//
//	s := node.Open(peer, wamp.ClientInfo{...})  // sends WELCOME through peer
//	defer s.Close()                              // always, however the connection ends
//	for each text message msg {
//		if err := s.Handle(connCtx, msg); err != nil {
//			if errors.Is(err, wamp.ErrProtocol) { close with 1007 }  // as Ratchet
//			break                                 // ErrClosed: already closing
//		}
//	}
//
// Handle must be called from one goroutine per session (the reader) and
// may block while a handler runs, bounded by NodeConfig.CallTimeout;
// replies to one client therefore keep Ratchet's in-order behaviour.
// Peer.Send must never block and must not call back into the Session; it
// may be called from any goroutine, including other sessions' readers
// during a broadcast. Binary messages are not WAMP v1; the gateway should
// treat them as Ratchet does (close).
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
//   - A failing topic callback gets the bundle's CALLERROR with the topic
//     URI as call id and details {"code", "topic": {}, "request": {},
//     "event": "onSubscribe"|"onUnSubscribe"|"onPublish"}.
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
//   - Malformed input is rejected more strictly than PHP's loose typing:
//     URIs must be strings, message types plain integers, arities exact.
//   - Placeholders are whole path segments; the PHP router also allowed
//     "user-{id}" and requirements spanning "/".
//   - Client limits (Limits) close abusive clients instead of letting them
//     grow server memory.
//   - On disconnect, OnUnsubscribe runs after the client was removed from
//     the topic (the bundle ran it while the closing client was still
//     listed), so Count excludes the leaver in both paths.
package wamp
