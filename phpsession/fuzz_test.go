package phpsession

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// fuzzLimits keep single fuzz executions fast while still exercising every
// limit path.
var fuzzLimits = Limits{MaxInput: 1 << 16, MaxDepth: 16, MaxElements: 4096, MaxString: 1 << 12}

// trickySeeds are hand-picked inputs near grammar edges.
var trickySeeds = []string{
	`N;`, `b:1;`, `i:-9223372036854775808;`, `i:9223372036854775808;`, `d:-.5e+2;`, `d:NAN;`, `d:-INF;`, `d:1e999;`,
	`s:3:"a"b";`, `S:3:"\61bc";`, `S:1:"\6";`, `a:1:{s:1:"5";N;}`, `a:2:{i:0;i:1;i:0;i:2;}`,
	`O:8:"stdClass":1:{s:1:"a";r:1;}`, `a:1:{i:0;R:1;}`, `a:3:{i:0;O:8:"stdClass":0:{}i:1;R:2;i:2;r:2;}`,
	`C:3:"Foo":3:{abc}`, `E:7:"Foo:Bar";`, `r:1;`, `a:1000000:{}`, `s:99999999999999999999:"a";`,
	"O:4:\"Fo\xc3\xa9\":0:{}", `a:1:{i:0;a:1:{i:0;a:1:{i:0;a:1:{i:0;a:0:{}}}}}`,
}

// fixtureSeeds returns every committed session record, and the token
// strings inside them, for seeding.
func fixtureSeeds(t testing.TB) (sessions [][]byte, tokens []string) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.sess"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, data)
		for _, format := range []Format{FormatPHP, FormatPHPBinary, FormatPHPSerialize} {
			s, err := DecodeSession(data, format, Limits{})
			if err != nil {
				continue
			}
			if a, ok := s.Get(AttributesKey); ok {
				for _, e := range a.Deref().Entries() {
					if v := e.Value.Deref(); v.Kind() == String && len(v.Str()) > 2 && v.Str()[1] == ':' {
						tokens = append(tokens, v.Str())
					}
				}
			}
		}
	}
	return sessions, tokens
}

func FuzzUnserialize(f *testing.F) {
	sessions, tokens := fixtureSeeds(f)
	for _, s := range trickySeeds {
		f.Add([]byte(s))
	}
	for _, s := range tokens {
		f.Add([]byte(s))
	}
	for _, s := range sessions {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Unserialize(data, fuzzLimits)
		if err != nil {
			checkFuzzError(t, err, len(data))
			if v != nil {
				t.Fatal("value and error")
			}
			return
		}
		checkTree(t, v, 0)
		// Re-encoding must decode again to the same tree: catches length,
		// offset and reference-numbering mistakes, not just crashes.
		enc := encode(v)
		again, err := UnserializeString(enc, Limits{MaxDepth: fuzzLimits.MaxDepth})
		if err != nil {
			t.Fatalf("re-decode of %q (from %q): %v", enc, data, err)
		}
		if dump(again) != dump(v) {
			t.Fatalf("round trip of %q: %s != %s", data, dump(again), dump(v))
		}
	})
}

func FuzzReader(f *testing.F) {
	sessions, _ := fixtureSeeds(f)
	for _, s := range sessions {
		for fm := uint8(0); fm < 3; fm++ {
			f.Add(fm, s)
		}
	}
	for _, s := range trickySeeds {
		f.Add(uint8(0), []byte("_sf2_attributes|"+s))
		f.Add(uint8(1), []byte("\x0f_sf2_attributes"+s))
	}
	f.Add(uint8(0), []byte(`_sf2_attributes|a:1:{s:14:"_security_main";s:5:"i:1;x";}`))
	formats := []Format{FormatPHP, FormatPHPBinary, FormatPHPSerialize, FormatIgbinary, FormatAuto}
	readers := make([]*Reader, len(formats))
	full := make([]*Reader, len(formats))
	for i, fm := range formats {
		r, err := NewReader(Options{Format: fm, Firewalls: []string{"main", "admin"}, Limits: fuzzLimits})
		if err != nil {
			f.Fatal(err)
		}
		readers[i] = r
		r2, _ := NewReader(Options{Format: fm, Firewalls: []string{"main", "admin"}, Limits: fuzzLimits})
		r2.noScan = true
		full[i] = r2
	}
	f.Fuzz(func(t *testing.T, fm uint8, data []byte) {
		r := readers[int(fm)%len(readers)]
		res, err := r.Read(data)
		// The fast path must say exactly what the full decode says.
		res2, err2 := full[int(fm)%len(readers)].Read(data)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("fast path error %v, full decode %v", err, err2)
		}
		if err == nil {
			a, _ := json.Marshal(res)
			b, _ := json.Marshal(res2)
			if string(a) != string(b) {
				t.Fatalf("fast path %s, full decode %s", a, b)
			}
			for i := range res.Firewalls {
				if fmt.Sprint(res.Firewalls[i].Err) != fmt.Sprint(res2.Firewalls[i].Err) {
					t.Fatalf("fast path err %v, full decode %v", res.Firewalls[i].Err, res2.Firewalls[i].Err)
				}
			}
		}
		if err != nil {
			checkFuzzError(t, err, len(data))
			return
		}
		if len(res.Firewalls) != 2 || res.Firewalls[0].Firewall != "main" || res.Firewalls[1].Firewall != "admin" {
			t.Fatalf("firewalls %+v", res.Firewalls)
		}
		for _, fr := range res.Firewalls {
			if fr.Authenticated != (fr.Token != nil) || fr.Authenticated == (fr.Reason != "") {
				t.Fatalf("inconsistent %+v", fr)
			}
			if fr.Err != nil && !errors.Is(fr.Err, ErrMalformed) && !errors.Is(fr.Err, ErrLimit) && !errors.Is(fr.Err, ErrUnsupportedToken) {
				t.Fatalf("unexpected error kind %v", fr.Err)
			}
		}
	})
}

func checkFuzzError(t *testing.T, err error, n int) {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %T %v is not a *DecodeError", err, err)
	}
	if errors.Is(err, ErrMalformed) == errors.Is(err, ErrLimit) {
		t.Fatalf("error %v must wrap exactly one of ErrMalformed, ErrLimit", err)
	}
	if de.Offset < 0 || de.Offset > n {
		t.Fatalf("offset %d outside input of %d bytes: %v", de.Offset, n, err)
	}
}

// checkTree checks structural invariants of a decoded tree: references are
// resolved and end in a non-reference, r: ends at an object.
func checkTree(t *testing.T, v *Value, depth int) {
	if depth > fuzzLimits.MaxDepth+1 {
		t.Fatalf("tree deeper than MaxDepth")
	}
	switch v.Kind() {
	case ObjectRef, Reference:
		if v.Target() == nil {
			t.Fatalf("unresolved %v%d", v.Kind(), v.Slot())
		}
		d := v.Deref()
		if d.Kind() == ObjectRef || d.Kind() == Reference {
			t.Fatalf("Deref ended at a reference")
		}
		if v.Kind() == ObjectRef && d.Kind() != Object && d.Kind() != Custom && d.Kind() != Enum {
			t.Fatalf("r: resolved to %v", d.Kind())
		}
	case Array, Object:
		for i := range v.Entries() {
			checkTree(t, &v.Entries()[i].Value, depth+1)
		}
	}
}

// fuzzSession checks one session handler: DecodeSession never panics, errors
// are *DecodeError within the input, and auto detection decodes whatever
// the handler decodes (possibly as another handler, but never failing).
func fuzzSession(f *testing.F, format Format) {
	sessions, _ := fixtureSeeds(f)
	for _, s := range sessions {
		f.Add(s)
	}
	for _, s := range trickySeeds {
		f.Add([]byte("a|" + s))
		f.Add([]byte("\x01a" + s))
		f.Add([]byte(igbinaryHeader + "\x14\x01\x11\x01a" + "\x06\x01"))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := DecodeSession(data, format, fuzzLimits)
		if err != nil {
			checkFuzzError(t, err, len(data))
			return
		}
		if v.Kind() != Array {
			t.Fatalf("session is a %v", v.Kind())
		}
		for i := range v.Entries() {
			checkTree(t, &v.Entries()[i].Value, 1)
		}
		if _, f2, err := DecodeSessionAuto(data, FormatAuto, fuzzLimits); err != nil {
			t.Fatalf("%s decodes it, auto fails: %v", format, err)
		} else if f2 == FormatAuto {
			t.Fatal("auto reported auto")
		}
	})
}

func FuzzSessionPHP(f *testing.F)          { fuzzSession(f, FormatPHP) }
func FuzzSessionPHPBinary(f *testing.F)    { fuzzSession(f, FormatPHPBinary) }
func FuzzSessionPHPSerialize(f *testing.F) { fuzzSession(f, FormatPHPSerialize) }
func FuzzSessionIgbinary(f *testing.F)     { fuzzSession(f, FormatIgbinary) }

// FuzzUnserializeIgbinary checks the igbinary value decoder alone.
func FuzzUnserializeIgbinary(f *testing.F) {
	sessions, _ := fixtureSeeds(f)
	for _, s := range sessions {
		if len(s) > 4 && string(s[:4]) == igbinaryHeader {
			f.Add(s)
		}
	}
	for _, s := range []string{"\x00", "\x14\x02\x06\x00\x25\x06\x05\x06\x01\x25\x01\x01", "\x17\x01S\x1d\x04i:1;",
		"\x14\x02\x06\x00\x17\x04Suit\x27\x11\x01H\x06\x01\x22\x01", "\x0c\x7f\xf8\x00\x00\x00\x00\x00\x01", "\x21\x80\x00\x00\x00\x00\x00\x00\x00"} {
		f.Add([]byte(igbinaryHeader + s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := UnserializeIgbinary(data, fuzzLimits)
		if err != nil {
			checkFuzzError(t, err, len(data))
			return
		}
		checkTree(t, v, 0)
	})
}
