package gateway

import "testing"

func TestCookieValue(t *testing.T) {
	for _, tc := range []struct {
		header, want string
		ok           bool
	}{
		{"PHPSESSID=abc", "abc", true},
		{"a=1; PHPSESSID=abc; b=2", "abc", true},
		{"a=1;PHPSESSID=abc", "abc", true},
		{"PHPSESSID=first; PHPSESSID=second", "first", true},
		{`PHPSESSID="quoted"`, "quoted", true},
		{"XPHPSESSID=abc", "", false},
		{"PHPSESSIDX=abc", "", false},
		{"PHPSESSID", "", false},
		{"", "", false},
		{"PHPSESSID=", "", true},
	} {
		got, ok := cookieValue([]byte(tc.header), []byte("PHPSESSID"))
		if ok != tc.ok || string(got) != tc.want {
			t.Errorf("cookieValue(%q) = %q, %v; want %q, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}
