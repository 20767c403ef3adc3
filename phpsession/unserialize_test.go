package phpsession

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
)

func TestUnserializeValid(t *testing.T) {
	obj := `O:8:"stdClass":0:{}`
	tests := []struct {
		name, in, want string
	}{
		{"null", `N;`, `N`},
		{"false", `b:0;`, `b:false`},
		{"true", `b:1;`, `b:true`},
		{"zero", `i:0;`, `i:0`},
		{"negative", `i:-5;`, `i:-5`},
		{"plus sign", `i:+5;`, `i:5`},
		{"leading zeros", `i:007;`, `i:7`},
		{"minus zero int", `i:-0;`, `i:0`},
		{"int64 max", `i:9223372036854775807;`, `i:9223372036854775807`},
		{"int64 min", `i:-9223372036854775808;`, `i:-9223372036854775808`},
		{"float", `d:0.1;`, `d:0.1`},
		{"float int form", `d:1;`, `d:1`},
		{"float exp", `d:1.0E+25;`, `d:1e+25`},
		{"float lower exp", `d:1e5;`, `d:100000`},
		{"float neg exp", `d:-1.5e-3;`, `d:-0.0015`},
		{"float leading dot", `d:.5;`, `d:0.5`},
		{"float trailing dot", `d:5.;`, `d:5`},
		{"float signed dot exp", `d:-.5e+2;`, `d:-50`},
		{"float minus zero", `d:-0;`, `d:-0`},
		{"INF", `d:INF;`, `d:+Inf`},
		{"-INF", `d:-INF;`, `d:-Inf`},
		{"NAN", `d:NAN;`, `d:NaN`},
		{"float overflow saturates like PHP", `d:1e999;`, `d:+Inf`},
		{"empty string", `s:0:"";`, `s:""`},
		{"string with quote", `s:3:"a"b";`, `s:"a\"b"`},
		{"string with separators", `s:9:"a|b;c}{N;";`, `s:"a|b;c}{N;"`},
		{"utf8 string counts bytes", `s:2:"é";`, `s:"é"`},
		{"binary string", "s:3:\"\x00\xff\n\";", `s:"\x00\xff\n"`},
		{"escaped string", `S:3:"\61bc";`, `s:"abc"`},
		{"escaped upper hex", `S:2:"\4A\4a";`, `s:"JJ"`},
		{"empty array", `a:0:{}`, `{}`},
		{"list", `a:2:{i:0;s:1:"a";i:1;b:1;}`, `{0=s:"a",1=b:true}`},
		{"string keys keep order", `a:2:{s:1:"z";i:1;s:1:"a";i:2;}`, `{"z"=i:1,"a"=i:2}`},
		{"numeric string key becomes int", `a:1:{s:1:"5";N;}`, `{5=N}`},
		{"negative numeric key", `a:1:{s:2:"-5";N;}`, `{-5=N}`},
		{"zero-padded key stays string", `a:1:{s:2:"05";N;}`, `{"05"=N}`},
		{"minus zero key stays string", `a:1:{s:2:"-0";N;}`, `{"-0"=N}`},
		{"escaped key", `a:1:{S:1:"\41";N;}`, `{"A"=N}`},
		{"duplicate keys kept in order", `a:2:{i:0;i:1;i:0;i:2;}`, `{0=i:1,0=i:2}`},
		{"nested", `a:1:{s:1:"a";a:1:{i:0;a:0:{}}}`, `{"a"={0={}}}`},
		{"object", `O:8:"stdClass":2:{s:1:"a";i:1;s:4:"` + "\x00*\x00" + `b";i:2;}`, `O:stdClass{"a"=i:1,"\x00*\x00b"=i:2}`},
		{"object namespaced", `O:8:"App\User":0:{}`, `O:App\User{}`},
		{"object int props (__serialize)", `O:3:"Foo":2:{i:0;N;i:1;s:1:"x";}`, `O:Foo{0=N,1=s:"x"}`},
		{"object count with plus", `O:3:"Foo":+1:{s:1:"a";N;}`, `O:Foo{"a"=N}`},
		{"object empty count means 0 (PHP parse_iv2)", `O:1:"A"::{}`, `O:A{}`},
		{"object count minus zero", `O:1:"A":-0:{}`, `O:A{}`},
		{"class with inner backslashes", `O:5:"A\\B\":0:{}`, `O:A\\B\{}`},
		{"class starting with digit", `O:2:"1A":0:{}`, `O:1A{}`},
		{"custom empty length", `C:1:"A"::{}`, `C:A:""`},
		{"custom length minus zero", `C:1:"A":-0:{}`, `C:A:""`},
		{"duplicate keys without refs", `a:2:{i:0;i:1;i:0;O:1:"A":0:{}}`, `{0=i:1,0=O:A{}}`},
		{"object non-ascii class", "O:4:\"Fo\xc3\xa9\":0:{}", "O:Fo\u00e9{}"},
		{"custom", `C:3:"Foo":3:{abc}`, `C:Foo:"abc"`},
		{"custom empty", `C:3:"Foo":0:{}`, `C:Foo:""`},
		{"custom payload with braces", `C:3:"Foo":3:{}{}}`, `C:Foo:"}{}"`},
		{"enum", `E:7:"Foo:Bar";`, `E:Foo:Bar`},
		{"r to earlier object", `a:2:{i:0;` + obj + `i:1;r:2;}`, `{0=O:stdClass{},1=r2->object}`},
		{"r to object under construction", `O:8:"stdClass":1:{s:1:"a";r:1;}`, `O:stdClass{"a"=r1->object}`},
		{"r to custom", `a:2:{i:0;C:3:"Foo":0:{}i:1;r:2;}`, `{0=C:Foo:"",1=r2->custom}`},
		{"r to r chains to object", `a:3:{i:0;` + obj + `i:1;r:2;i:2;r:3;}`, `{0=O:stdClass{},1=r2->object,2=r3->object}`},
		{"R to int", `a:2:{i:0;i:5;i:1;R:2;}`, `{0=i:5,1=R2->int}`},
		{"R to enclosing array", `a:1:{i:0;R:1;}`, `{0=R1->array}`},
		{"R takes no slot", `a:3:{i:0;` + obj + `i:1;R:2;i:2;r:2;}`, `{0=O:stdClass{},1=R2->object,2=r2->object}`},
		{"keys take no slot", `a:2:{s:1:"k";` + obj + `s:1:"l";r:2;}`, `{"k"=O:stdClass{},"l"=r2->object}`},
		{"nested values take slots", `a:2:{i:0;a:1:{i:0;` + obj + `}i:1;r:3;}`, `{0={0=O:stdClass{}},1=r3->object}`},
		{"object props take slots", `a:2:{i:0;O:1:"A":1:{s:1:"p";` + obj + `}i:1;r:3;}`, `{0=O:A{"p"=O:stdClass{}},1=r3->object}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Unserialize([]byte(tt.in), Limits{})
			if err != nil {
				t.Fatalf("Unserialize(%q): %v", tt.in, err)
			}
			if got := dump(v); got != tt.want {
				t.Errorf("Unserialize(%q)\n got %s\nwant %s", tt.in, got, tt.want)
			}
			// Re-encoding must decode to the same tree (S: comes back as s:,
			// canonical numeric keys as i:, floats in Go notation).
			again, err := UnserializeString(encode(v), Limits{})
			if err != nil {
				t.Fatalf("re-decode of %q: %v", encode(v), err)
			}
			if dump(again) != dump(v) {
				t.Errorf("round trip changed %s into %s", dump(v), dump(again))
			}
		})
	}
}

func TestReferenceTargets(t *testing.T) {
	v, err := UnserializeString(`a:3:{i:0;O:8:"stdClass":1:{s:1:"p";i:7;}i:1;R:2;i:2;r:2;}`, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	obj := &v.Entries()[0].Value
	for i := 1; i <= 2; i++ {
		ref := &v.Entries()[i].Value
		if ref.Target() != obj || ref.Deref() != obj {
			t.Errorf("entry %d: target %p, want the object at %p", i, ref.Target(), obj)
		}
	}
	self, err := UnserializeString(`a:1:{s:4:"self";R:1;}`, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	inner, _ := self.Get("self")
	if inner.Deref() != self {
		t.Errorf("R:1 inside the top array should point at it")
	}

	// In the php session format slots run across variables.
	sess, err := DecodeSession([]byte(`a|O:8:"stdClass":0:{}b|i:5;c|r:1;d|R:2;`), FormatPHP, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := sess.Get("a")
	c, _ := sess.Get("c")
	b, _ := sess.Get("b")
	d, _ := sess.Get("d")
	if c.Deref() != a || d.Deref() != b {
		t.Errorf("session refs: c->%s d->%s", dump(c.Deref()), dump(d.Deref()))
	}
}

func TestValueAccessors(t *testing.T) {
	in := `O:10:"App\Entity":4:{s:2:"id";i:42;s:8:"` + "\x00*\x00" + `email";s:3:"a@b";s:16:"` + "\x00App\\Entity\x00" + `name";s:1:"n";s:1:"5";b:1;}`
	v, err := UnserializeString(in, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Kind() != Object || v.Class() != `App\Entity` || v.Len() != 4 {
		t.Fatalf("got %s", dump(v))
	}
	if p, prop, ok := v.Prop("email"); !ok || p.Str() != "a@b" || prop.Visibility != Protected {
		t.Errorf("Prop(email) = %v %+v %v", p, prop, ok)
	}
	if p, prop, ok := v.Prop("name"); !ok || p.Str() != "n" || prop.Visibility != Private || prop.Class != `App\Entity` {
		t.Errorf("Prop(name) = %v %+v %v", p, prop, ok)
	}
	if p, _, ok := v.Prop("id"); !ok || p.Int() != 42 {
		t.Errorf("Prop(id) = %v %v", p, ok)
	}
	if _, _, ok := v.Prop("nope"); ok {
		t.Error("Prop(nope) found")
	}
	if _, ok := v.Get("id"); ok {
		t.Error("Get on an object must not find properties")
	}
	for _, s := range []string{Visibility(0).String(), Protected.String(), Private.String(), Kind(200).String()} {
		if s == "" {
			t.Error("empty String()")
		}
	}
	a, _ := UnserializeString(`a:3:{i:5;s:1:"x";s:1:"k";i:1;s:1:"k";i:2;}`, Limits{})
	if x, ok := a.Get("5"); !ok || x.Str() != "x" {
		t.Error(`Get("5") should find int key 5`)
	}
	if x, ok := a.Get("k"); !ok || x.Int() != 2 {
		t.Error(`Get("k") should return the last duplicate, as PHP does`)
	}
	// Wrong-kind accessors return zero values instead of panicking.
	var zero Value
	if zero.Kind() != Null || !zero.IsNull() || zero.Bool() || zero.Int() != 0 || zero.Float() != 0 ||
		zero.Str() != "" || zero.Class() != "" || zero.Entries() != nil || zero.Slot() != 0 ||
		zero.Target() != nil || zero.Deref() != &zero {
		t.Error("zero Value accessors")
	}
	if k := (Key{str: "\x00\x00x"}).Property(); k.Name != "\x00\x00x" || k.Visibility != Public {
		t.Errorf("malformed mangled name: %+v", k)
	}
}

// TestUnserializeErrors checks that bad input fails with the right sentinel
// at the right byte, and that the message says where.
func TestUnserializeErrors(t *testing.T) {
	obj := `O:8:"stdClass":0:{}`
	tests := []struct {
		name, in string
		lim      Limits
		sentinel error
		offset   int
		msg      string // substring of the reason
	}{
		{"empty", ``, Limits{}, ErrMalformed, 0, "end of input"},
		{"unknown tag", `x:1;`, Limits{}, ErrMalformed, 0, "unknown type tag"},
		{"N truncated", `N`, Limits{}, ErrMalformed, 1, "expected ';'"},
		{"missing colon", `i1;`, Limits{}, ErrMalformed, 1, "expected ':'"},
		{"bool 2", `b:2;`, Limits{}, ErrMalformed, 2, "0 or 1"},
		{"bool 01", `b:01;`, Limits{}, ErrMalformed, 3, "expected ';'"},
		{"int empty", `i:;`, Limits{}, ErrMalformed, 2, "expected digits"},
		{"int truncated", `i:1`, Limits{}, ErrMalformed, 3, "end of input"},
		{"int above int64", `i:9223372036854775808;`, Limits{}, ErrMalformed, 2, "above int64"},
		{"int below int64", `i:-9223372036854775809;`, Limits{}, ErrMalformed, 2, "below int64"},
		{"int huge", `i:99999999999999999999999999;`, Limits{}, ErrMalformed, 2, "above int64"},
		{"trailing garbage", `i:1;x`, Limits{}, ErrMalformed, 4, "unexpected bytes after"},
		{"two values", `N;N;`, Limits{}, ErrMalformed, 2, "unexpected bytes after"},
		{"float +INF", `d:+INF;`, Limits{}, ErrMalformed, 2, "invalid float"},
		{"float -NAN", `d:-NAN;`, Limits{}, ErrMalformed, 2, "invalid float"},
		{"float hex", `d:0x10;`, Limits{}, ErrMalformed, 3, "expected ';'"},
		{"float underscore", `d:1_0;`, Limits{}, ErrMalformed, 3, "expected ';'"},
		{"float only exp", `d:e5;`, Limits{}, ErrMalformed, 2, "invalid float"},
		{"float dot", `d:.;`, Limits{}, ErrMalformed, 2, "invalid float"},
		{"float empty exp", `d:1e;`, Limits{}, ErrMalformed, 2, "exponent"},
		{"float inf word", `d:inf;`, Limits{}, ErrMalformed, 2, "invalid float"},
		{"string too short", `s:3:"ab";`, Limits{}, ErrMalformed, 8, "length mismatch"},
		{"string too long", `s:1:"ab";`, Limits{}, ErrMalformed, 6, "length mismatch"},
		{"string claims huge", `s:99999999999999999999:"a";`, Limits{}, ErrMalformed, 24, "exceeds the 2 bytes left"},
		{"string claims past end", `s:5:"abc`, Limits{}, ErrMalformed, 5, "exceeds the 2 bytes left"},
		{"string negative", `s:-1:"";`, Limits{}, ErrMalformed, 2, "expected digits"},
		{"string plus", `s:+1:"a";`, Limits{}, ErrMalformed, 2, "expected digits"},
		{"string no quote", `s:1:a;`, Limits{}, ErrMalformed, 4, "opening string"},
		{"string no semicolon", `s:1:"a"`, Limits{}, ErrMalformed, 7, "after string"},
		{"escaped bad hex", `S:1:"\6g";`, Limits{}, ErrMalformed, 5, "invalid escape"},
		{"escaped truncated escape", `S:1:"\6";`, Limits{}, ErrMalformed, 5, "invalid escape"},
		{"escaped too short", `S:3:"\61";`, Limits{}, ErrMalformed, 10, "closing escaped string"},
		{"escaped claims huge", `S:999:"a";`, Limits{}, ErrMalformed, 7, "exceeds"},
		{"array unclosed", `a:1:{i:0;i:1;`, Limits{}, ErrMalformed, 13, "closing array"},
		{"array fewer entries", `a:2:{i:0;i:1;}`, Limits{}, ErrMalformed, 2, "claims 2 entries"},
		{"array fewer entries roomy", `a:2:{i:0;i:1;}          `, Limits{}, ErrMalformed, 13, "key must be"},
		{"array more entries", `a:1:{i:0;i:1;i:1;i:2;}`, Limits{}, ErrMalformed, 13, "more entries than its count"},
		{"array claims huge", `a:1000000:{}`, Limits{}, ErrMalformed, 2, "claims 1000000 entries"},
		{"array negative", `a:-1:{}`, Limits{}, ErrMalformed, 2, "expected digits"},
		{"array plus", `a:+1:{i:0;N;}`, Limits{}, ErrMalformed, 2, "expected digits"},
		{"array no brace", `a:0:}`, Limits{}, ErrMalformed, 4, "opening array"},
		{"array then semicolon", `a:0:{};`, Limits{}, ErrMalformed, 6, "unexpected bytes after"},
		{"float key", `a:1:{d:1.5;i:1;}`, Limits{}, ErrMalformed, 5, "key must be an integer or a string"},
		{"null key", `a:1:{N;i:1;}`, Limits{}, ErrMalformed, 5, "key must be"},
		{"bool key", `a:1:{b:1;i:1;}`, Limits{}, ErrMalformed, 5, "key must be"},
		{"array key truncated", `a:1:{i`, Limits{}, ErrMalformed, 2, "claims 1 entries"},
		{"class bad byte", `O:1:"-":0:{}`, Limits{}, ErrMalformed, 5, "invalid byte '-' in class name"},
		{"class space", `O:3:"a b":0:{}`, Limits{}, ErrMalformed, 6, "invalid byte ' '"},
		{"class empty", `O:0:"":0:{}`, Limits{}, ErrMalformed, 5, "empty class name"},
		{"object negative count", `O:8:"stdClass":-1:{}`, Limits{}, ErrMalformed, 15, "negative count of object"},
		{"class leading backslash", `O:4:"\Foo":0:{}`, Limits{}, ErrMalformed, 5, "starts with a backslash"},
		{"class only backslash", `O:1:"\":0:{}`, Limits{}, ErrMalformed, 5, "starts with a backslash"},
		{"enum leading backslash", `E:4:"\A:B";`, Limits{}, ErrMalformed, 5, "starts with a backslash"},
		{"duplicate key with refs", `a:2:{i:0;i:1;i:1;a:3:{i:0;i:5;i:1;R:3;i:0;i:6;}}`, Limits{}, ErrMalformed, 17, "duplicate key \"0\" in a value that also uses back-references"},
		{"duplicate property with refs", `O:1:"A":3:{s:1:"5";O:1:"B":0:{}i:5;N;s:1:"r";r:2;}`, Limits{}, ErrMalformed, 0, "duplicate key \"5\""},
		{"object null key", `O:8:"stdClass":1:{N;i:1;}`, Limits{}, ErrMalformed, 18, "key must be"},
		{"object unclosed", `O:8:"stdClass":1:{s:1:"a";i:1;`, Limits{}, ErrMalformed, 30, "closing object"},
		{"custom length mismatch", `C:3:"Foo":2:{abc}`, Limits{}, ErrMalformed, 15, "closing custom payload"},
		{"custom claims huge", `C:3:"Foo":99:{abc}`, Limits{}, ErrMalformed, 14, "exceeds"},
		{"custom negative", `C:3:"Foo":-1:{}`, Limits{}, ErrMalformed, 10, "negative length of custom payload"},
		{"enum no colon", `E:6:"FooBar";`, Limits{}, ErrMalformed, 5, "Class:Case"},
		{"enum empty case", `E:4:"Foo:";`, Limits{}, ErrMalformed, 5, "Class:Case"},
		{"enum empty class", `E:4:":Foo";`, Limits{}, ErrMalformed, 5, "Class:Case"},
		{"enum bad class", `E:5:"F-o:B";`, Limits{}, ErrMalformed, 6, "invalid byte"},
		{"r self at top", `r:1;`, Limits{}, ErrMalformed, 2, "does not exist (0 so far)"},
		{"R nothing at top", `R:1;`, Limits{}, ErrMalformed, 2, "does not exist"},
		{"r zero", `a:1:{i:0;r:0;}`, Limits{}, ErrMalformed, 11, "does not exist"},
		{"R zero", `R:0;`, Limits{}, ErrMalformed, 2, "does not exist"},
		{"r self", `a:1:{i:0;r:2;}`, Limits{}, ErrMalformed, 11, "does not exist (1 so far)"},
		{"r to array", `a:1:{i:0;r:1;}`, Limits{}, ErrMalformed, 11, "points at a array, not an object"},
		{"r to int", `a:2:{i:0;i:5;i:1;r:2;}`, Limits{}, ErrMalformed, 19, "points at a int"},
		{"r past R (R takes no slot)", `a:3:{i:0;` + obj + `i:1;R:2;i:2;r:3;}`, Limits{}, ErrMalformed, 42, "does not exist"},
		{"r huge", `a:1:{i:0;r:99999999999999999999999;}`, Limits{}, ErrMalformed, 11, "does not exist"},
		{"r negative", `a:1:{i:0;r:-1;}`, Limits{}, ErrMalformed, 11, "expected digits"},
		{"r truncated", `a:1:{i:0;r:1`, Limits{}, ErrMalformed, 12, "after back-reference"},

		{"input limit", `s:3:"abc";`, Limits{MaxInput: 4}, ErrLimit, 4, "exceeds MaxInput 4"},
		{"string limit", `s:3:"abc";`, Limits{MaxString: 2}, ErrLimit, 5, "exceeds MaxString 2"},
		{"class limit", `O:3:"Foo":0:{}`, Limits{MaxString: 2}, ErrLimit, 5, "exceeds MaxString 2"},
		{"custom limit", `C:1:"F":3:{abc}`, Limits{MaxString: 2}, ErrLimit, 11, "exceeds MaxString 2"},
		{"escaped limit", `S:3:"abc";`, Limits{MaxString: 2}, ErrLimit, 5, "exceeds MaxString 2"},
		{"depth limit", `a:1:{i:0;a:1:{i:0;a:0:{}}}`, Limits{MaxDepth: 2}, ErrLimit, 18, "deeper than MaxDepth 2"},
		{"depth limit object", `O:1:"A":1:{i:0;O:1:"B":0:{}}`, Limits{MaxDepth: 1}, ErrLimit, 15, "deeper than MaxDepth 1"},
		{"element limit", `a:3:{i:0;N;i:1;N;i:2;N;}`, Limits{MaxElements: 3}, ErrLimit, 21, "more than MaxElements 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Unserialize([]byte(tt.in), tt.lim)
			if err == nil {
				t.Fatalf("Unserialize(%q) = %s, want error", tt.in, dump(v))
			}
			checkDecodeError(t, err, tt.sentinel, tt.offset, tt.msg)
		})
	}
}

func checkDecodeError(t *testing.T, err, sentinel error, offset int, msg string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %q does not wrap %v", err, sentinel)
	}
	other := ErrLimit
	if sentinel == ErrLimit {
		other = ErrMalformed
	}
	if errors.Is(err, other) {
		t.Errorf("error %q wraps both sentinels", err)
	}
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %T is not a *DecodeError", err)
	}
	if de.Offset != offset {
		t.Errorf("offset %d, want %d (%v)", de.Offset, offset, err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("at byte %d", de.Offset)) {
		t.Errorf("message %q does not name the offset", err)
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		t.Errorf("message %q does not contain %q", err, msg)
	}
}

func TestInvalidLimits(t *testing.T) {
	for _, l := range []Limits{{MaxInput: -1}, {MaxDepth: -1}, {MaxElements: -1}, {MaxString: -1}, {MaxDepth: maxDepthCap + 1}} {
		if _, err := UnserializeString("N;", l); err == nil || errors.Is(err, ErrMalformed) || errors.Is(err, ErrLimit) {
			t.Errorf("%+v: err = %v, want a configuration error", l, err)
		}
		if _, err := Unserialize([]byte("N;"), l); err == nil {
			t.Errorf("%+v: no error", l)
		}
		if _, err := DecodeSession(nil, FormatPHP, l); err == nil {
			t.Errorf("%+v: DecodeSession: no error", l)
		}
	}
	d := DefaultLimits()
	if d.MaxInput != 4<<20 || d.MaxDepth != 64 || d.MaxElements != 1<<20 || d.MaxString != d.MaxInput {
		t.Errorf("DefaultLimits() = %+v", d)
	}
}

// TestHostileInputIsCheap feeds inputs built to make a careless decoder
// allocate what the input claims or recurse without bound, and checks each
// fails with the right error and small. How fast they fail, and that back
// references resolve in linear time, are measured by
// BenchmarkHostileInput: a wall-clock bound here would fail on a loaded
// machine and prove nothing on an idle one.
func TestHostileInputIsCheap(t *testing.T) {
	deep := strings.Repeat("a:1:{i:0;", 1_000_000) + "N;" + strings.Repeat("}", 1_000_000)
	tests := []struct {
		name     string
		in       string
		sentinel error
	}{
		{"deep arrays", deep, ErrLimit},
		{"deep objects", strings.Repeat(`O:1:"A":1:{i:0;`, 200_000), ErrLimit},
		{"huge string claim", `s:9223372036854775807:"` + strings.Repeat("x", 100), ErrMalformed},
		{"huge escaped claim", `S:4611686018427387904:"` + strings.Repeat("x", 100), ErrMalformed},
		{"huge array claim", `a:4611686018427387904:{` + strings.Repeat("i:0;N;", 100), ErrMalformed},
		{"huge object claim", `O:1:"A":4611686018427387904:{`, ErrMalformed},
		{"nested huge claims", strings.Repeat("a:100000:{i:0;", 60) + "N;", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := UnserializeString(tt.in, Limits{})
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("err = %v, want %v", err, tt.sentinel)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("allocated %d bytes for %d bytes of input", alloc, len(tt.in))
			}
		})
	}
	// Many back-references within limits resolve, in memory linear in
	// their number.
	valid := manyRefs(100000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v, err := UnserializeString(valid, Limits{})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if v.Len() != 100000 || v.Entries()[99999].Value.Deref() != &v.Entries()[0].Value {
		t.Error("refs not resolved")
	}
	// About 770 bytes an entry today (the value tree and the reference
	// table); a bound per entry fails if resolving grows faster than them.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2048*100000 {
		t.Errorf("allocated %d bytes for 100000 entries", alloc)
	}
}

// manyRefs is an array of n entries: an object, then n-1 references to it.
func manyRefs(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "a:%d:{i:0;O:1:\"A\":0:{}", n)
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "i:%d;r:2;", i)
	}
	b.WriteString("}")
	return b.String()
}

// BenchmarkHostileInput measures what TestHostileInputIsCheap checks for
// correctness: back references resolve in time linear in their number
// (compare ns/op of refs-10000 and refs-100000), and a deep nesting fails
// at MaxDepth without walking the rest.
func BenchmarkHostileInput(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		in := manyRefs(n)
		b.Run(fmt.Sprintf("refs-%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, err := UnserializeString(in, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	deep := strings.Repeat("a:1:{i:0;", 1_000_000) + "N;" + strings.Repeat("}", 1_000_000)
	b.Run("deep-arrays", func(b *testing.B) {
		for b.Loop() {
			if _, err := UnserializeString(deep, Limits{}); !errors.Is(err, ErrLimit) {
				b.Fatal(err)
			}
		}
	})
}

func TestFloatSpecials(t *testing.T) {
	v, _ := UnserializeString(`d:NAN;`, Limits{})
	if !math.IsNaN(v.Float()) {
		t.Error("NAN")
	}
	v, _ = UnserializeString(`d:-0.0;`, Limits{})
	if !math.Signbit(v.Float()) {
		t.Error("-0.0 lost its sign")
	}
	v, _ = UnserializeString(`d:1e-400;`, Limits{})
	if v.Float() != 0 {
		t.Errorf("underflow: %v", v.Float())
	}
}

// TestCustomPayloadSharesNumbering pins PHP's shared back-reference table
// between a serialization and the nested serialize() inside a
// \Serializable payload (bytes written by PHP 8.2 for
// serialize([$o, new S([new stdClass, $o]), $p, $p]) where S::serialize()
// returns serialize($this->d)): r:2 inside the payload is the outer $o, and
// the payload's values shift the slots after it, so r:8 is $p. A parser that
// treated the payload as opaque or restarted its numbering would resolve
// r:8 to "outer"'s string or fail.
func TestCustomPayloadSharesNumbering(t *testing.T) {
	in := `a:4:{i:0;O:8:"stdClass":1:{s:1:"n";s:5:"outer";}i:1;C:1:"S":37:{a:2:{i:0;O:8:"stdClass":0:{}i:1;r:2;}}i:2;O:8:"stdClass":1:{s:1:"n";s:5:"after";}i:3;r:8;}`
	v, err := UnserializeString(in, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := v.GetInt(1)
	inner := c.Inner()
	if inner == nil || inner.Len() != 2 {
		t.Fatalf("payload not decoded: %s", dump(c))
	}
	outer, _ := v.GetInt(0)
	if got := inner.Entries()[1].Value.Deref(); got != outer {
		t.Errorf("r:2 inside the payload resolved to %s, want the outer object", dump(got))
	}
	last, _ := v.GetInt(3)
	p, _ := v.GetInt(2)
	if last.Deref() != p {
		t.Errorf("r:8 resolved to %s, want the object after the payload", dump(last.Deref()))
	}
	// A payload that is not one serialized value stays opaque and takes no
	// slots: r:3 is then the object after it.
	v, err = UnserializeString(`a:3:{i:0;C:1:"S":3:{x:1}i:1;O:8:"stdClass":0:{}i:2;r:3;}`, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := v.GetInt(0); c.Inner() != nil || c.Str() != "x:1" {
		t.Errorf("opaque payload: %s", dump(c))
	}
	if r, _ := v.GetInt(2); r.Deref().Kind() != Object {
		t.Errorf("r:3 after an opaque payload: %s", dump(r))
	}
}

func TestValueUnserialize(t *testing.T) {
	v, err := UnserializeString(`a:1:{s:14:"_security_main";s:12:"a:1:{i:0;N;}";}`, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := v.Get("_security_main")
	in, err := s.Unserialize(Limits{})
	if err != nil || in.Kind() != Array || in.Len() != 1 {
		t.Fatalf("%v %v", in, err)
	}
	if _, err := v.Unserialize(Limits{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("array: %v", err)
	}
}
