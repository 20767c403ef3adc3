package phpsession

import "fmt"

// Format names a PHP session.serialize_handler: how the whole $_SESSION
// array is laid out in the stored session record.
type Format string

// Session serialize handlers.
const (
	// FormatPHP is PHP's default handler: name|<serialized value> repeated.
	// Names cannot contain '|', but values can, so records are parsed by
	// the lengths inside the values, never by splitting on '|'.
	FormatPHP Format = "php"
	// FormatPHPBinary is <name length byte><name><serialized value> repeated.
	FormatPHPBinary Format = "php_binary"
	// FormatPHPSerialize is serialize($_SESSION): one a:<n>:{...} array.
	FormatPHPSerialize Format = "php_serialize"
	// FormatAuto detects which of the other handlers wrote each record
	// (see [DetectFormat]); the detected one is reported in Result.Format.
	FormatAuto Format = "auto"
	// FormatIgbinary is the igbinary extension's handler (php-redis
	// installs it): a 4-byte version header and igbinary_serialize() of the
	// variables array. Symfony's token inside stays serialize() text.
	FormatIgbinary Format = "igbinary"
)

// checkFormat maps "" to the PHP default and rejects unknown or not yet
// implemented handlers.
func checkFormat(f Format) (Format, error) {
	switch f {
	case "":
		return FormatPHP, nil
	case FormatPHP, FormatPHPBinary, FormatPHPSerialize, FormatIgbinary, FormatAuto:
		return f, nil
	}
	return f, fmt.Errorf("%w %q (supported: php, php_binary, php_serialize, igbinary, auto)", ErrUnsupportedFormat, string(f))
}

// DecodeSession decodes a whole session record written with the given
// serialize handler ("" means php, auto detects it) and returns its
// variables as an Array value whose entries are in stored order.
// Back-reference slots are numbered across all variables, as PHP's session
// decoder does.
//
// The input is copied once; decoded strings alias that copy.
func DecodeSession(data []byte, f Format, lim Limits) (*Value, error) {
	v, _, err := DecodeSessionAuto(data, f, lim)
	return v, err
}

// DecodeSessionAuto is [DecodeSession] that also returns the handler that
// decoded the record: f itself, or the detected one for [FormatAuto].
func DecodeSessionAuto(data []byte, f Format, lim Limits) (*Value, Format, error) {
	f, err := checkFormat(f)
	if err != nil {
		return nil, f, err
	}
	l, err := lim.normalized()
	if err != nil {
		return nil, f, err
	}
	if len(data) > l.MaxInput {
		return nil, f, limitErr(l.MaxInput, "input of %d bytes exceeds MaxInput %d", len(data), l.MaxInput)
	}
	s := string(data)
	var d decoder
	var items []Entry
	if f == FormatAuto {
		var firstErr error
		for _, c := range candidates(s) {
			d.reset(s, l)
			items, err = d.session(c)
			if err == nil {
				f = c
				break
			}
			if firstErr == nil {
				firstErr = err
			}
		}
		if f == FormatAuto {
			return nil, f, firstErr
		}
	} else {
		d.reset(s, l)
		if items, err = d.session(f); err != nil {
			return nil, f, err
		}
	}
	return &Value{kind: Array, items: items}, f, nil
}

// DetectFormat returns the serialize handler that wrote a session record:
// the first of the candidates (see below) that decodes the whole record,
// or the error of the most likely one. Detection is unambiguous for the
// records PHP writes, except that an empty record is an empty session in
// every format (reported as php).
//
// Candidates, most likely first: igbinary when the record starts with
// igbinary's version header; php_serialize when it starts with "a:";
// php_binary when the first byte is not printable (a name length there;
// PHP session names are printable in practice); php otherwise. The others
// follow, so a record that any handler decodes is detected.
func DetectFormat(data []byte, lim Limits) (Format, error) {
	_, f, err := DecodeSessionAuto(data, FormatAuto, lim)
	return f, err
}

// candidates lists the handlers to try on s, most likely first; every
// handler is tried before detection gives up (a php record may, in theory,
// start with any byte but '|'), so auto decodes whatever one of the
// handlers decodes. Malformed input thus costs up to four linear passes.
func candidates(s string) []Format {
	switch {
	case s == "":
		return []Format{FormatPHP}
	case len(s) >= 4 && s[:4] == igbinaryHeader:
		return candIgbinary
	case len(s) >= 2 && s[0] == 'a' && s[1] == ':':
		return candSerialize
	case s[0] < 0x20 || s[0] >= 0x7f:
		return candBinary
	}
	return candPHP
}

var (
	candIgbinary  = []Format{FormatIgbinary, FormatPHP, FormatPHPBinary, FormatPHPSerialize}
	candSerialize = []Format{FormatPHPSerialize, FormatPHP, FormatPHPBinary, FormatIgbinary}
	candBinary    = []Format{FormatPHPBinary, FormatPHP, FormatIgbinary, FormatPHPSerialize}
	candPHP       = []Format{FormatPHP, FormatPHPBinary, FormatPHPSerialize, FormatIgbinary}
)

// session decodes d.s (already reset) as a session record in format f and
// returns its variables with references resolved.
func (d *decoder) session(f Format) ([]Entry, error) {
	switch f {
	case FormatPHPSerialize:
		return d.sessionSerialize()
	case FormatIgbinary:
		return d.sessionIgbinary()
	case FormatPHPBinary:
		return d.sessionVars(d.binaryName)
	default:
		return d.sessionVars(d.phpName)
	}
}

// sessionVars decodes the name/value sequences of the php and php_binary
// handlers; name consumes one variable name.
func (d *decoder) sessionVars(name func() (string, error)) ([]Entry, error) {
	base := len(d.stack)
	d.nameAt = d.nameAt[:0]
	for !d.eof() {
		at := d.pos
		n, err := name()
		if err != nil {
			return nil, err
		}
		var v Value
		if err := d.value(&v); err != nil {
			return nil, err
		}
		d.stack = append(d.stack, Entry{Key: Key{str: n}, Value: v})
		d.nameAt = append(d.nameAt, at)
	}
	items := d.alloc(len(d.stack) - base)
	copy(items, d.stack[base:])
	clear(d.stack[base:])
	d.stack = d.stack[:base]
	if err := d.resolveEntries(items, d.nameAt); err != nil {
		return nil, err
	}
	return items, nil
}

// phpName reads "name|". PHP's encoder refuses names containing '|', so the
// first '|' ends the name; the value after it is then parsed by its lengths.
// PHP silently ignores a trailing fragment without '|'; we reject it,
// because a record PHP wrote never has one.
func (d *decoder) phpName() (string, error) {
	start := d.pos
	for i := d.pos; i < len(d.s); i++ {
		if d.s[i] == '|' {
			d.pos = i + 1
			return d.s[start:i], nil
		}
	}
	return "", malformed(start, "session variable name without '|' (%d trailing bytes)", len(d.s)-start)
}

// binaryName reads php_binary's length byte and name. Like PHP, the high bit
// (the PHP 5 "undefined variable" marker) is masked off, and a name must be
// followed by at least one byte.
func (d *decoder) binaryName() (string, error) {
	start := d.pos
	n := int(d.s[d.pos] & 0x7f)
	if d.pos+1+n >= len(d.s) {
		return "", malformed(start, "php_binary variable name of %d bytes runs past the end", n)
	}
	d.pos += 1 + n
	return d.s[start+1 : d.pos], nil
}

// sessionSerialize decodes php_serialize: serialize($_SESSION). An empty
// record is an empty session (what PHP stores for a fresh one).
func (d *decoder) sessionSerialize() ([]Entry, error) {
	if d.eof() {
		return nil, nil
	}
	if d.s[0] != 'a' {
		return nil, malformed(0, "php_serialize session must be an array, found %q", d.s[0])
	}
	var v Value
	if err := d.one(&v); err != nil {
		return nil, err
	}
	return v.items, nil
}
