package wamp

import (
	"time"
)

// Observer receives the node's metrics events; the gateway implements it
// with Prometheus so that this package does not depend on a metrics
// library. Every label value passed is bounded: protocols, message type
// names ("CALL", "EVENT", ..., "INVALID"), the kinds "rpc" and "topic",
// and handler names from the registry; never URIs, users or session ids.
//
// Methods are called synchronously on hot paths (every message, every
// fan-out) from many goroutines at once, so they must be cheap, safe for
// concurrent use and must not call back into the node.
//
// Gauges (sessions, topics, subscriptions) are not pushed through the
// observer: read them with Node.Stats, e.g. from a GaugeFunc.
type Observer interface {
	// MessageIn counts one message received from a client. msgType is the
	// upper-case message type name, or "INVALID" for input that was not a
	// valid message of the protocol.
	MessageIn(p Protocol, msgType string)
	// MessagesOut counts n messages of one type sent to clients: n is the
	// number of recipients of a fan-out, 1 otherwise.
	MessagesOut(p Protocol, msgType string, n int)
	// Call reports one RPC handler invocation: handler is the RPC
	// handler's Name, d the time the method took, failed whether the
	// client got an error.
	Call(handler string, d time.Duration, failed bool)
	// RoutingMiss counts a URI no route matched; kind is "rpc" or
	// "topic".
	RoutingMiss(kind string)
	// AccessDenied counts a request refused by a route's access rules;
	// kind is "rpc" or "topic".
	AccessDenied(kind string)
	// Limit counts a client running into a bound: one of the Limit*
	// names. The node counts what it refuses itself (offloaded work past
	// its bounds); limits that close the connection come back from Handle
	// as a *LimitError, which the gateway counts.
	Limit(name string)
}

type nopObserver struct{}

func (nopObserver) MessageIn(Protocol, string) {}

func (nopObserver) MessagesOut(Protocol, string, int) {}

func (nopObserver) Call(string, time.Duration, bool) {}

func (nopObserver) RoutingMiss(string) {}

func (nopObserver) AccessDenied(string) {}

func (nopObserver) Limit(string) {}

// Stats is a snapshot of the node's gauges.
type Stats struct {
	// Sessions is the number of open sessions per protocol.
	Sessions map[Protocol]int
	// Topics is the number of topics with at least one subscriber.
	Topics int
	// Subscriptions is the number of (session, topic) subscriptions.
	Subscriptions int
}

// Stats returns the current gauges. It takes the node's locks briefly.
func (n *Node) Stats() Stats {
	st := Stats{Sessions: map[Protocol]int{}}
	n.mu.RLock()
	for p, c := range n.sessionCount {
		st.Sessions[p] = c
	}
	n.mu.RUnlock()
	n.broker.mu.RLock()
	st.Topics = len(n.broker.topics)
	st.Subscriptions = n.broker.subscriptions
	n.broker.mu.RUnlock()
	return st
}
