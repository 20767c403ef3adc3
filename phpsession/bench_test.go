package phpsession

import (
	"os"
	"testing"
)

// BenchmarkReaderTypical measures the gateway's per-handshake cost: one
// ~1 KiB Symfony 5.4 session with a UsernamePasswordToken.
func BenchmarkReaderTypical(b *testing.B) {
	data, err := os.ReadFile("testdata/upt_inmemory_roles.sess")
	if err != nil {
		b.Fatal(err)
	}
	r, err := NewReader(Options{Firewalls: []string{"main"}})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := r.Read(data)
		if err != nil || !res.Firewalls[0].Authenticated {
			b.Fatal(err, res)
		}
	}
}

// BenchmarkUnserializeToken measures the generic decoder alone on the token
// string of the typical session.
func BenchmarkUnserializeToken(b *testing.B) {
	data, err := os.ReadFile("testdata/upt_inmemory_roles.sess")
	if err != nil {
		b.Fatal(err)
	}
	s, err := DecodeSession(data, FormatPHP, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	a, _ := s.Get(AttributesKey)
	tok, _ := a.Get("_security_main")
	in := []byte(tok.Str())
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unserialize(in, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
