package phpsession

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeSession(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		in     string
		want   string
	}{
		{"php empty", FormatPHP, ``, `{}`},
		{"php default format", "", `a|i:1;`, `{"a"=i:1}`},
		{"php two vars", FormatPHP, `a|i:1;b|s:3:"x|y";`, `{"a"=i:1,"b"=s:"x|y"}`},
		{"php value with fake var", FormatPHP, `a|s:8:"x|i:1;b|";c|N;`, `{"a"=s:"x|i:1;b|","c"=N}`},
		{"php empty name", FormatPHP, `|i:1;`, `{""=i:1}`},
		{"php numeric name stays string", FormatPHP, `5|i:1;`, `{"5"=i:1}`},
		{"php array value", FormatPHP, `x|a:1:{s:1:"|";s:1:"|";}y|b:0;`, `{"x"={"|"=s:"|"},"y"=b:false}`},
		{"php refs across vars", FormatPHP, `a|O:1:"A":0:{}b|r:1;`, `{"a"=O:A{},"b"=r1->object}`},
		{"php R across vars", FormatPHP, `a|i:5;b|R:1;`, `{"a"=i:5,"b"=R1->int}`},
		{"binary two vars", FormatPHPBinary, "\x01ai:1;\x02bbs:1:\"|\";", `{"a"=i:1,"bb"=s:"|"}`},
		{"binary high bit masked", FormatPHPBinary, "\x81ai:1;", `{"a"=i:1}`},
		{"binary empty name", FormatPHPBinary, "\x00N;", `{""=N}`},
		{"serialize", FormatPHPSerialize, `a:2:{s:1:"a";i:1;i:7;N;}`, `{"a"=i:1,7=N}`},
		{"serialize empty record", FormatPHPSerialize, ``, `{}`},
		{"serialize empty array", FormatPHPSerialize, `a:0:{}`, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := DecodeSession([]byte(tt.in), tt.format, Limits{})
			if err != nil {
				t.Fatalf("DecodeSession(%q): %v", tt.in, err)
			}
			if got := dump(v); got != tt.want {
				t.Errorf("got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestDecodeSessionErrors(t *testing.T) {
	tests := []struct {
		name     string
		format   Format
		in       string
		lim      Limits
		sentinel error
		offset   int
		msg      string
	}{
		{"php trailing name", FormatPHP, `a|i:1;junk`, Limits{}, ErrMalformed, 6, "without '|'"},
		{"php no bar", FormatPHP, `abc`, Limits{}, ErrMalformed, 0, "without '|'"},
		{"php missing value", FormatPHP, `a|`, Limits{}, ErrMalformed, 2, "expected a value"},
		{"php bad value", FormatPHP, `a|x;`, Limits{}, ErrMalformed, 2, "unknown type tag"},
		{"php length lies", FormatPHP, `a|s:5:"x";b|N;`, Limits{}, ErrMalformed, 12, "length mismatch"},
		{"php r to int across vars", FormatPHP, `a|i:5;b|r:1;`, Limits{}, ErrMalformed, 10, "not an object"},
		{"php R at start", FormatPHP, `a|R:1;`, Limits{}, ErrMalformed, 4, "does not exist"},
		{"php elements", FormatPHP, `a|N;b|N;c|N;`, Limits{MaxElements: 2}, ErrLimit, 10, "MaxElements"},
		{"php input", FormatPHP, `a|N;`, Limits{MaxInput: 3}, ErrLimit, 3, "MaxInput"},
		{"php duplicate names with refs", FormatPHP, `a|O:1:"A":0:{}b|N;a|i:1;c|r:1;`, Limits{}, ErrMalformed, 18, "duplicate key \"a\""},
		{"binary name past end", FormatPHPBinary, "\x05ab", Limits{}, ErrMalformed, 0, "past the end"},
		{"binary name without value", FormatPHPBinary, "\x01a", Limits{}, ErrMalformed, 0, "past the end"},
		{"binary bad value", FormatPHPBinary, "\x01ax", Limits{}, ErrMalformed, 2, "unknown type tag"},
		{"serialize not array", FormatPHPSerialize, `i:1;`, Limits{}, ErrMalformed, 0, "must be an array"},
		{"serialize trailing", FormatPHPSerialize, `a:0:{}x`, Limits{}, ErrMalformed, 6, "after the value"},
		{"serialize php format data", FormatPHPSerialize, `a|i:1;`, Limits{}, ErrMalformed, 1, "expected ':'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := DecodeSession([]byte(tt.in), tt.format, tt.lim)
			if err == nil {
				t.Fatalf("DecodeSession(%q) = %s, want error", tt.in, dump(v))
			}
			checkDecodeError(t, err, tt.sentinel, tt.offset, tt.msg)
		})
	}
}

func TestUnsupportedFormats(t *testing.T) {
	for _, f := range []Format{"wddx", "PHP", "msgpack"} {
		if _, err := DecodeSession([]byte(`a|N;`), f, Limits{}); !errors.Is(err, ErrUnsupportedFormat) ||
			!strings.Contains(err.Error(), "unsupported serialize handler") {
			t.Errorf("DecodeSession(%q): %v", f, err)
		}
		if _, err := NewReader(Options{Format: f, Firewalls: []string{"main"}}); !errors.Is(err, ErrUnsupportedFormat) {
			t.Errorf("NewReader(%q): %v", f, err)
		}
	}
}
