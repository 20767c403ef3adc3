// Package phpsession decodes the PHP session data a legacy Symfony
// application writes and recovers the Symfony security token from it.
//
// It is pure Go (standard library only) and knows nothing about sockets or
// session stores: callers hand it the raw bytes of one session record (the
// contents of a sess_<id> file, the data column of PdoSessionHandler, ...).
//
// There are three layers:
//
//   - [Unserialize] decodes one value in PHP's serialize() format into a
//     [Value] tree. It is bounded by [Limits], never panics, never allocates
//     from a length the input merely claims, runs in time linear in the input
//     and resolves back-references (r:/R:) with PHP's own slot numbering.
//   - [DecodeSession] splits a whole session record written by one of PHP's
//     session.serialize_handler formats (php, php_binary, php_serialize) into
//     its variables.
//   - [Reader] applies Symfony's conventions on top: the AttributeBag lives
//     in the _sf2_attributes variable, ContextListener stores
//     serialize($token) under _security_<firewall>, and the token's
//     __serialize() data nests the parent class data in the last element.
//
// Strings in decoded values alias one immutable copy of the input, so
// decoding a 1 KiB session costs a single copy instead of one allocation per
// string; holding on to any decoded string keeps that copy alive (use
// strings.Clone to detach). [Reader.Read] returns only detached strings.
//
// Errors: every decode error wraps [ErrMalformed] or [ErrLimit] (never both)
// and is a [*DecodeError] that names what was wrong and the byte offset. No
// error ever contains session ids: this package never sees them.
package phpsession
