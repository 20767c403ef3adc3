package phpsession

import (
	"fmt"
	"os"
	"strings"
	"testing"

	// Benchmark-only peer: the most used Go PHP-unserialize library, run on
	// the same bytes to keep the speed claims honest. Not used by the package.
	"github.com/elliotchance/phpserialize"
)

// typicalToken is the token string of the typical ~1 KiB session.
func typicalToken(b testing.TB) string {
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
	return tok.Str()
}

// sizedSession builds a php_serialize session of about size bytes: the
// typical token plus shopping-cart-like attributes before it, the shape of
// a big real session (the token is not the last thing a skip-scan sees).
func sizedSession(b testing.TB, size int) []byte {
	tok := typicalToken(b)
	var items strings.Builder
	n := 0
	for items.Len() < size-len(tok)-200 {
		name := fmt.Sprintf("item %d | with text", n)
		fmt.Fprintf(&items, `s:%d:"cart%d";a:4:{s:2:"id";i:%d;s:4:"name";s:%d:"%s";s:5:"price";d:%d.5;s:4:"tags";a:2:{i:0;s:3:"a|b";i:1;b:1;}}`,
			len(fmt.Sprint("cart", n)), n, n, len(name), name, n)
		n++
	}
	attrs := fmt.Sprintf(`a:%d:{%ss:14:"_security_main";s:%d:"%s";}`, n+1, items.String(), len(tok), tok)
	return []byte(fmt.Sprintf(`a:2:{s:15:"_sf2_attributes";%ss:9:"_sf2_meta";a:3:{s:1:"u";i:1795709865;s:1:"c";i:1795709865;s:1:"l";i:0;}}`, attrs))
}

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

// BenchmarkReaderSized runs Reader.Read and the peer library on the same
// php_serialize records of 1 KiB, 200 KiB and 1 MiB: decode plus identity.
func BenchmarkReaderSized(b *testing.B) {
	for _, size := range []int{1 << 10, 200 << 10, 1 << 20} {
		data := sizedSession(b, size)
		b.Run(fmt.Sprintf("wsgate/%dKiB", size>>10), func(b *testing.B) {
			r, err := NewReader(Options{Format: FormatPHPSerialize, Firewalls: []string{"main"}})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				res, err := r.Read(data)
				if err != nil || res.Firewalls[0].Token == nil || res.Firewalls[0].Token.UserIdentifier != "alice" {
					b.Fatal(err, res)
				}
			}
		})
		b.Run(fmt.Sprintf("elliotchance/%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if id := peerIdentity(data); id != "alice" {
					b.Fatalf("peer: %q", id)
				}
			}
		})
	}
}

// peerIdentity does with elliotchance/phpserialize as much of what
// Reader.Read does as the library can: decode the session array and find
// the token string. It cannot decode the token itself: its object decoder
// only accepts string property names, and every Symfony >= 4.3 token is
// O:...:{i:0;...} (__serialize data has integer keys); peerToken checks
// that this is still so. So the peer does strictly less work per record.
func peerIdentity(data []byte) string {
	sess, err := phpserialize.UnmarshalAssociativeArray(data)
	if err != nil {
		return err.Error()
	}
	attrs, _ := sess["_sf2_attributes"].(map[any]any)
	tok, _ := attrs["_security_main"].(string)
	if !strings.Contains(tok, `"alice"`) {
		return "no token"
	}
	return "alice"
}

// TestPeerCannotDecodeTokens documents why the peer benchmark stops at the
// token string.
func TestPeerCannotDecodeTokens(t *testing.T) {
	tok := typicalToken(t)
	if _, err := phpserialize.UnmarshalIndexedArray([]byte("a:1:{i:0;" + tok + "}")); err == nil {
		t.Fatal("elliotchance/phpserialize now decodes Symfony tokens: make the benchmark extract the identity with it")
	}
}

// BenchmarkUnserializeToken measures the generic decoder alone on the token
// string of the typical session.
func BenchmarkUnserializeToken(b *testing.B) {
	in := []byte(typicalToken(b))
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unserialize(in, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
