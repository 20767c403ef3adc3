package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelp: every verb's --help (and -h, and `wsgate help VERB`) exits 0
// and prints to stdout its synopsis, its flags and its examples.
func TestHelp(t *testing.T) {
	for _, v := range verbs {
		for _, args := range [][]string{
			append(strings.Fields(v.name), "--help"),
			append(strings.Fields(v.name), "-h"),
			append([]string{"help"}, strings.Fields(v.name)...),
		} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var out, errb bytes.Buffer
				if code := run(args, &out, &errb); code != exitOK {
					t.Fatalf("exit %d, want 0; stderr %s", code, errb.String())
				}
				if errb.Len() != 0 {
					t.Errorf("stderr %q", errb.String())
				}
				want := []string{"usage: wsgate " + v.synopsis + "\n", "examples:\n", "exit status:"}
				if v.config {
					want = append(want, "flags:\n", "-config FILE")
				}
				for _, e := range v.examples {
					want = append(want, "  "+e+"\n")
				}
				for _, w := range want {
					if !strings.Contains(out.String(), w) {
						t.Errorf("help lacks %q:\n%s", w, out.String())
					}
				}
			})
		}
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(args, &out, &errb); code != exitOK || errb.Len() != 0 {
				t.Fatalf("exit %d, stderr %q", code, errb.String())
			}
			for _, v := range verbs {
				if !strings.Contains(out.String(), "wsgate "+v.synopsis) {
					t.Errorf("top-level help lacks %q", v.synopsis)
				}
			}
			if !strings.Contains(out.String(), "examples:\n") {
				t.Errorf("top-level help has no examples:\n%s", out.String())
			}
		})
	}
}

// TestUsageErrors: a bad flag, a missing or extra operand, or an unknown
// verb exits 1 (exitUsage) with the reason and the usage on stderr and
// nothing on stdout.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"serve", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"config", "check", "-x"}, "flag provided but not defined: -x"},
		{[]string{"serve", "--config"}, "flag needs an argument: -config"},
		{[]string{"serve", "extra"}, "want 0 operand(s), got 1"},
		{[]string{"config", "check", "a", "b"}, "want 0 operand(s), got 2"},
		{[]string{"session", "inspect"}, "want 1 operand(s), got 0"},
		{[]string{"session", "inspect", "a", "b"}, "want 1 operand(s), got 2"},
		{[]string{"version", "extra"}, "usage: wsgate version"},
		{[]string{"nosuch"}, "usage:\n  wsgate serve"},
		{[]string{"config"}, "usage:\n  wsgate serve"},
		{[]string{"help", "nosuch"}, "usage:\n  wsgate serve"},
		{nil, "usage:\n  wsgate serve"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, errb.String())
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q", out.String())
			}
		})
	}
}
