package wamp

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestAppendJSONString(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"plain", "chan/a", `"chan/a"`},
		{"quote and backslash", `a"b\c`, `"a\"b\\c"`},
		{"short escapes", "a\nb\rc\td", `"a\nb\rc\td"`},
		{"other control bytes", "\x00\x1f", `"\u0000\u001f"`},
		{"HTML is not escaped", "<b>&", `"<b>&"`},
		{"multi-byte UTF-8 as is", "é😀", `"é😀"`},
		{"invalid UTF-8 becomes U+FFFD", "a\xffb", `"a\ufffdb"`},
		{"line and paragraph separators escaped", "\u2028\u2029", `"\u2028\u2029"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := appendJSONString([]byte("x"), tc.in)
			if string(got) != "x"+tc.want {
				t.Fatalf("appendJSONString(%q) = %s, want %s", tc.in, got[1:], tc.want)
			}
			var back string
			if err := json.Unmarshal(got[1:], &back); err != nil {
				t.Fatalf("%s is not a JSON string: %v", got[1:], err)
			}
			if want := strings.ToValidUTF8(tc.in, "\uFFFD"); back != want {
				t.Errorf("decodes to %q, want %q", back, want)
			}
		})
	}
}

func TestAppendJSON(t *testing.T) {
	cases := []struct {
		name    string
		in      any
		want    string
		wantErr bool
	}{
		{"raw message kept", json.RawMessage(`{"a": [1, 2]}`), `{"a": [1, 2]}`, false},
		{"invalid raw message refused", json.RawMessage(`{"a":`), "", true},
		{"string", "<x>", `"<x>"`, false},
		{"no HTML escaping, no newline", map[string]string{"h": "<b>&"}, `{"h":"<b>&"}`, false},
		{"unencodable", make(chan int), "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := appendJSON(nil, tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && string(got) != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestJSONDepth(t *testing.T) {
	cases := []struct {
		in    string
		limit int
		want  int
	}{
		{`1`, 10, 0},
		{`[]`, 10, 1},
		{`[{"a":[1]},{}]`, 10, 3},
		{`["[[[{{{"]`, 10, 1},               // brackets in strings do not count
		{`["\"[[[", {"k\\":"]]]"}]`, 10, 2}, // nor do escaped quotes end strings
		{`[[[[[[`, 2, 3},                    // stops just past the limit; need not be valid
	}
	for _, tc := range cases {
		if got := jsonDepth([]byte(tc.in), tc.limit); got != tc.want {
			t.Errorf("jsonDepth(%s, %d) = %d, want %d", tc.in, tc.limit, got, tc.want)
		}
	}
}

func TestSplitArray(t *testing.T) {
	cases := []struct {
		in   string
		want []string // nil: not an array
	}{
		{`[]`, []string{}},
		{` [ 1 , "a" ] `, []string{`1`, `"a"`}},
		{`[[1,[2]],{"a":"]"},"\"]",-1.5e3,true,null]`, []string{`[1,[2]]`, `{"a":"]"}`, `"\"]"`, `-1.5e3`, `true`, `null`}},
		{`{"a":1}`, nil},
		{`"[1]"`, nil},
		{`1`, nil},
	}
	for _, tc := range cases {
		got, ok := splitArray([]byte(tc.in))
		if ok != (tc.want != nil) {
			t.Errorf("splitArray(%s) ok = %v", tc.in, ok)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("splitArray(%s) = %q, want %q", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if string(got[i]) != tc.want[i] {
				t.Errorf("splitArray(%s)[%d] = %s, want %s", tc.in, i, got[i], tc.want[i])
			}
		}
	}
}

func TestIsEmptyContainer(t *testing.T) {
	for in, want := range map[string]bool{`[]`: true, `{}`: true, "[ \n\t]": true, `{ }`: true, `[1]`: false, `{"a":1}`: false, `[`: false, ``: false} {
		if got := isEmptyContainer(json.RawMessage(in)); got != want {
			t.Errorf("isEmptyContainer(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestSplitMessage(t *testing.T) {
	deep := strings.Repeat("[", 5) + strings.Repeat("]", 5)
	cases := []struct {
		name  string
		in    string
		typ   int
		limit bool // a *LimitError for the depth, rather than plain ErrProtocol
		err   bool
	}{
		{"message", `[2,"c","u",[1]]`, 2, false, false},
		{"invalid UTF-8", "[5,\"\xff\"]", 0, false, true},
		{"too deep", deep, 0, true, true},
		{"too deep even when malformed", deep[:6], 0, true, true},
		{"malformed", `[1,`, 0, false, true},
		{"not an array", `{"t":1}`, 0, false, true},
		{"empty", `[]`, 0, false, true},
		{"type not a plain integer", `[1.0]`, 0, false, true},
		{"type too long", `[1000]`, 0, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			arr, typ, err := splitMessage([]byte(tc.in), 4)
			if !tc.err {
				if err != nil || typ != tc.typ || len(arr) == 0 {
					t.Fatalf("got %q %d %v, want type %d", arr, typ, err, tc.typ)
				}
				return
			}
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("err %v does not wrap ErrProtocol", err)
			}
			var le *LimitError
			if got := errors.As(err, &le) && le.Limit == LimitJSONDepth; got != tc.limit {
				t.Errorf("err %v: depth limit %v, want %v", err, got, tc.limit)
			}
		})
	}
}

// TestSplitMessageCopies: handlers may keep the elements, while the
// gateway reuses its read buffer once Handle returns.
func TestSplitMessageCopies(t *testing.T) {
	in := []byte(`[7,"chan/a",{"x":1}]`)
	arr, _, err := splitMessage(in, DefaultMaxJSONDepth)
	if err != nil {
		t.Fatal(err)
	}
	copy(in, bytes.Repeat([]byte{'#'}, len(in)))
	if string(arr[2]) != `{"x":1}` {
		t.Errorf("element changed with the input buffer: %s", arr[2])
	}
}
