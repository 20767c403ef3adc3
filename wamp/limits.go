package wamp

import "fmt"

// Limits bounds what one client can make the node hold. Zero fields take
// the defaults below. A client that goes over a limit gets an error
// wrapping ErrLimit (and ErrProtocol) from Handle: the gateway closes it,
// which is clearer for a misbehaving client than silently dropping part of
// what it asked for.
type Limits struct {
	// MaxURILength bounds every URI and prefix in a message, before and
	// after CURIE expansion. Default 1024 bytes.
	MaxURILength int
	// MaxPrefixes bounds the PREFIX definitions of one session. Default 64.
	MaxPrefixes int
	// MaxSubscriptions bounds the topics one session is subscribed to.
	// Default 1024.
	MaxSubscriptions int
	// MaxJSONDepth bounds how deep arrays and objects nest in one message.
	// Default 512, PHP's json_decode default: whatever the PHP app could
	// decode passes.
	MaxJSONDepth int
	// MaxOffloadedCallsPerSession bounds the offloaded calls (see
	// handler.OffloadedRPC) one session may have running. Default 64.
	MaxOffloadedCallsPerSession int
	// MaxOffloadedCalls bounds the offloaded calls running on the node.
	// Default 10000.
	MaxOffloadedCalls int
	// MaxPatterns bounds the distinct patterns of pattern-based
	// subscriptions on the node (each session's count against
	// MaxSubscriptions besides): a wildcard pattern costs a comparison per
	// publish of a topic with as many segments. A new pattern past it is
	// refused with ERROR wsgate.error.too_many_patterns, the connection
	// kept. Default 10000.
	MaxPatterns int
	// MaxMessageSize bounds the JSON a wamp.2.msgpack or wamp.2.cbor
	// message is transcoded into (the transport bounds the frame itself,
	// but JSON can be several times larger: base64 binaries, escaped
	// strings, long float forms). Zero or negative leaves it unbounded;
	// the gateway sets limits.max_message_size.
	MaxMessageSize int
}

// Default limits.
const (
	DefaultMaxURILength     = 1024
	DefaultMaxPrefixes      = 64
	DefaultMaxSubscriptions = 1024
	DefaultMaxJSONDepth     = 512
	// DefaultMaxOffloadedCallsPerSession and DefaultMaxOffloadedCalls are
	// the defaults of the Limits of the same names.
	DefaultMaxOffloadedCallsPerSession = 64
	DefaultMaxOffloadedCalls           = 10000
	// DefaultMaxPatterns is the default of Limits.MaxPatterns.
	DefaultMaxPatterns = 10000
)

// withDefaults returns l with the default of every field that is zero (or
// negative).
func (l Limits) withDefaults() Limits {
	orDefault(&l.MaxURILength, DefaultMaxURILength)
	orDefault(&l.MaxPrefixes, DefaultMaxPrefixes)
	orDefault(&l.MaxSubscriptions, DefaultMaxSubscriptions)
	orDefault(&l.MaxJSONDepth, DefaultMaxJSONDepth)
	orDefault(&l.MaxOffloadedCallsPerSession, DefaultMaxOffloadedCallsPerSession)
	orDefault(&l.MaxOffloadedCalls, DefaultMaxOffloadedCalls)
	orDefault(&l.MaxPatterns, DefaultMaxPatterns)
	return l
}

// orDefault sets *v to def unless it is positive.
func orDefault(v *int, def int) {
	if *v <= 0 {
		*v = def
	}
}

// Names of the limits a client can run into (LimitError.Limit and
// Observer.Limit): each is the gateway's configuration key without
// "limits.", so that one metric label names them all.
const (
	LimitURILength             = "max_uri_length"
	LimitPrefixes              = "max_prefixes"
	LimitSubscriptions         = "max_subscriptions"
	LimitJSONDepth             = "max_json_depth"
	LimitPendingCallsPerClient = "max_pending_calls_per_connection"
	LimitPendingCalls          = "max_pending_calls"
	LimitPatterns              = "max_patterns"
	// LimitMessageSize is a binary message whose JSON transcoding is over
	// Limits.MaxMessageSize; the gateway closes it with 1009, as the
	// transport closes a frame over the same limit.
	LimitMessageSize = "max_message_size"
)

// ErrLimit is wrapped (together with ErrProtocol) by errors for a client
// that exceeded a Limits bound, so the gateway can log or count it apart
// from garbage input while still closing the connection. Those errors are
// *LimitError, which names the limit.
var ErrLimit = fmt.Errorf("%w: client limit exceeded", ErrProtocol)

// LimitError is a client going over one of the node's Limits. Handle
// returns it; it wraps ErrLimit (and so ErrProtocol): the gateway closes
// the connection, with 1008 (policy violation), and counts Limit.
type LimitError struct {
	// Limit is one of the Limit* names.
	Limit string
	// Detail says by how much, for logs.
	Detail string
}

func (e *LimitError) Error() string { return ErrLimit.Error() + ": " + e.Limit + ": " + e.Detail }

// Unwrap makes errors.Is(err, ErrLimit) and errors.Is(err, ErrProtocol) hold.
func (e *LimitError) Unwrap() error { return ErrLimit }

// limitErr makes the *LimitError for limit, with a Detail from format.
func limitErr(limit, format string, a ...any) error {
	return &LimitError{Limit: limit, Detail: fmt.Sprintf(format, a...)}
}
