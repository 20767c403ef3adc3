// Package phpsession decodes the PHP session data a legacy Symfony
// application writes and recovers the Symfony security token from it.
//
// It is pure Go (standard library only) and knows nothing about sockets or
// session stores: callers hand it the raw bytes of one session record (the
// contents of a sess_<id> file, the data column of PdoSessionHandler, a
// Redis value, ...).
//
// There are three layers:
//
//   - [Unserialize] decodes one value in PHP's serialize() format into a
//     [Value] tree: N, b, i (int64), d (INF, -INF, NAN, exponents, -0),
//     s and S strings, arrays, objects with their property visibility, C:
//     (\Serializable, whose payload is decoded in place when it is itself
//     serialized data, see [Value.Inner]), E: enums, and r:/R: resolved with
//     PHP's own slot numbering, shared with nested payloads as PHP shares
//     it. [Value.Unserialize] decodes a string that holds a serialized value
//     (Symfony keeps the token that way) in one call. [UnserializeIgbinary]
//     does the same for igbinary's binary format. Decoding is bounded by
//     [Limits], never panics, never allocates from a length the input merely
//     claims and runs in time linear in the input (times MaxDepth at worst,
//     for payload attempts nested in payloads).
//   - [DecodeSession] splits a whole session record written by one of PHP's
//     session.serialize_handler formats (php, php_binary, php_serialize,
//     igbinary, or auto: detected per record, see [DetectFormat]) into its
//     variables.
//   - [Reader] applies Symfony's conventions on top: the AttributeBag (or
//     NamespacedAttributeBag) lives in the _sf2_attributes variable, the
//     MetadataBag in _sf2_meta, ContextListener stores serialize($token)
//     under _security_<firewall>, and every token layout from Symfony 2.8 to
//     7.x keeps the parent class data last (as an array, or as a nested
//     serialize() string up to 4.1).
//
// Strings in decoded values alias one immutable copy of the input, so
// decoding a 1 KiB session costs a single copy instead of one allocation per
// string; holding on to any decoded string keeps that copy alive (use
// strings.Clone to detach). [Reader.Read] returns only detached strings and
// does not copy the record at all.
//
// Errors: every decode error wraps [ErrMalformed] or [ErrLimit] (never both)
// and is a [*DecodeError] that names what was wrong and the byte offset. No
// error ever contains session ids: this package never sees them.
//
// Tests: the committed fixtures in testdata were written by PHP 8.2 through
// Debian's Symfony 5.4 and, for older and newer layouts, look-alike classes
// (test/php/gen-fixtures.php, gen-legacy.php); differential tests run PHP's
// own unserialize() where php is installed.
package phpsession
