package storage

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/wsgate/wsgate/test/testenv"
)

// Fixtures of memcached items real PHP wrote, so that the decoders are
// tested without memcached or PHP: testdata/memcached/<name>.value is the
// item's value as memcached returned it, <name>.session what PHP's
// \Memcached::get (or, for the native handler, the handler itself) reads
// back, and manifest.json the item's flags and who wrote it.
//
// Regenerate (needs memcached and php8.2-memcached, see
// test/setup-services.sh):
//
//	WSGATE_UPDATE_MEMCACHED_FIXTURES=1 go test -run TestMemcachedFixtures ./storage/
const memcFixtureDir = "testdata/memcached"

// memcFixture is one entry of manifest.json.
type memcFixture struct {
	Flags uint32 `json:"flags"`
	// Writer says where the bytes come from: "php" (PHP wrote the item)
	// or "go" (made by the test: zstd, which Debian's php-memcached is
	// built without, laid out as php-memcached's s_compress_value does).
	Writer string `json:"writer"`
}

func loadMemcFixtures(t testing.TB) map[string]memcFixture {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(memcFixtureDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]memcFixture
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func readFixture(t testing.TB, name, ext string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(memcFixtureDir, name+ext))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMemcachedFixtures decodes every fixture and compares it with what PHP
// read back; with WSGATE_UPDATE_MEMCACHED_FIXTURES=1 it first writes them
// anew through real PHP.
func TestMemcachedFixtures(t *testing.T) {
	if os.Getenv("WSGATE_UPDATE_MEMCACHED_FIXTURES") == "1" {
		writeMemcFixtures(t)
	}
	fixtures := loadMemcFixtures(t)
	algs := map[uint32]bool{}
	for name, f := range fixtures {
		t.Run(name, func(t *testing.T) {
			value, want := readFixture(t, name, ".value"), readFixture(t, name, ".session")
			got, err := newMemcDecoder(DefaultMaxSize).decode(f.Flags, value)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("decode = %d bytes, want PHP's %d", len(got), len(want))
			}
			// One byte less of MaxSize than the session: refused before
			// decompressing, as too large.
			if _, err := newMemcDecoder(int64(len(want))-1).decode(f.Flags, value); !errors.Is(err, ErrTooLarge) {
				t.Errorf("decode with MaxSize %d = %v; want ErrTooLarge", len(want)-1, err)
			}
		})
		algs[f.Flags&^memcTypeMask] = true
	}
	for _, want := range []uint32{0, memcCompressed | memcFastLZ, memcCompressed | memcZlib, memcCompressed | memcZstd} {
		if !algs[want] {
			t.Errorf("no fixture with flags %#x", want)
		}
	}
	// FastLZ's level is the first byte's top 3 bits: php-memcached's
	// fastlz_compress uses level 2 from 64 KiB on. Both must be covered.
	levels := map[byte]bool{}
	for name, f := range fixtures {
		if f.Flags&memcFastLZ != 0 {
			levels[readFixture(t, name, ".value")[4]>>5+1] = true
		}
	}
	if !levels[1] || !levels[2] {
		t.Errorf("FastLZ levels covered: %v; want 1 and 2", levels)
	}
}

// writeMemcFixtures has PHP write phpMemcachedCases into memcached, saves
// each item and what PHP reads back, and derives the zstd fixture.
func writeMemcFixtures(t *testing.T) {
	addr := testenv.Memcached(t)
	php := testenv.PHP(t)
	host, port, _ := net.SplitHostPort(addr)
	admin := newMemcachedAdmin(t, addr)
	manifest := map[string]memcFixture{}
	save := func(name string, f memcFixture, value, session []byte) {
		manifest[name] = f
		for ext, b := range map[string][]byte{".value": value, ".session": session} {
			if err := os.WriteFile(filepath.Join(memcFixtureDir, name+ext), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.MkdirAll(memcFixtureDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range phpMemcachedCases {
		// A fixed id; the session's _sf2_meta timestamps still change
		// with every regeneration.
		in := map[string]any{"host": host, "port": port, "user": "dave", "roles": []string{"ROLE_USER"}, "id": "fixture" + strings.ReplaceAll(tc.name, "-", "")}
		for k, v := range tc.in {
			in[k] = v
		}
		_, key := phpMemcachedSession(t, in)
		admin.track(key)
		it, err := admin.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		// PHP's own reading: \Memcached::get decompresses; the native
		// handler's data is the item itself.
		session := it.Value
		if in["store"] == "memcached" {
			cmd := exec.Command(php, "-r", `$m = new Memcached(); $m->addServer($argv[1], (int) $argv[2]); $v = $m->get($argv[3]); if (!is_string($v)) { exit(1); } echo $v;`, host, port, key)
			if session, err = cmd.Output(); err != nil {
				t.Fatalf("PHP get %s: %v", key, err)
			}
		}
		save(tc.name, memcFixture{Flags: it.Flags, Writer: "php"}, it.Value, session)
	}
	// zstd: the session of symfony-fastlz, compressed as php-memcached
	// 3.2 with zstd would (ZSTD_compress, default level 3).
	session := readFixture(t, "symfony-fastlz", ".session")
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		t.Fatal(err)
	}
	value := binary.LittleEndian.AppendUint32(nil, uint32(len(session)))
	value = enc.EncodeAll(session, value)
	save("symfony-zstd", memcFixture{Flags: memcCompressed | memcZstd, Writer: "go"}, value, session)
	b, _ := json.MarshalIndent(manifest, "", "  ")
	if err := os.WriteFile(filepath.Join(memcFixtureDir, "manifest.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMemcachedStoreReadsFixtures puts the fixtures' items into memcached
// as PHP left them and reads them through the store.
func TestMemcachedStoreReadsFixtures(t *testing.T) {
	addr := testenv.Memcached(t)
	prefix := uniqueName(t, "wsgate_t_")
	admin := newMemcachedAdmin(t, addr)
	s := openTestMemcached(t, MemcachedOptions{Addrs: []string{addr}, Prefix: prefix, LookupTimeout: 10 * time.Second})
	fixtures := loadMemcFixtures(t)
	var ids []string
	for name, f := range fixtures {
		id := strings.ReplaceAll(name, "-", "")
		ids = append(ids, id)
		admin.set(t, prefix+id, readFixture(t, name, ".value"), f.Flags, time.Minute)
		got, err := s.Read(context.Background(), id)
		if err != nil || !bytes.Equal(got, readFixture(t, name, ".session")) {
			t.Errorf("%s: Read = %d bytes, %v", name, len(got), err)
		}
	}
	res, err := s.ReadMany(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	for name := range fixtures {
		if r := res[strings.ReplaceAll(name, "-", "")]; r.Err != nil || !bytes.Equal(r.Data, readFixture(t, name, ".session")) {
			t.Errorf("%s: ReadMany = %d bytes, %v", name, len(r.Data), r.Err)
		}
	}
}

// withLength is a php-memcached compressed value: n, then data.
func withLength(n uint32, data []byte) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, n), data...)
}

func TestMemcachedDecodeErrors(t *testing.T) {
	zl := func(b []byte) []byte {
		var buf bytes.Buffer
		w := zlib.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	hello := zl([]byte("hello hello hello"))
	badSum := append([]byte(nil), hello...)
	badSum[len(badSum)-1] ^= 1
	zs := func(b []byte) []byte {
		enc, _ := zstd.NewWriter(nil)
		return enc.EncodeAll(b, nil)
	}
	const fl, zlb, zst = memcCompressed | memcFastLZ, memcCompressed | memcZlib, memcCompressed | memcZstd
	for _, tc := range []struct {
		name    string
		flags   uint32
		value   []byte
		want    string
		wantErr error
	}{
		{"raw", 0, []byte("a|i:1;"), "a|i:1;", nil},
		{"raw over MaxSize", 0, bytes.Repeat([]byte("x"), 1025), "", ErrTooLarge},
		{"not a string", 4, []byte("a:0:{}"), "", errMemcValue},
		{"compressed without algorithm", memcCompressed, withLength(3, []byte("abc")), "", errMemcValue},
		{"short length", zlb, []byte{1, 0}, "", errMemcValue},
		{"declared over MaxSize", zlb, withLength(1025, hello), "", ErrTooLarge},
		{"zlib", zlb, withLength(17, hello), "hello hello hello", nil},
		{"zlib shorter than declared (accepted, as by uncompress)", zlb, withLength(40, hello), "hello hello hello", nil},
		{"zlib longer than declared", zlb, withLength(16, hello), "", errMemcValue},
		{"zlib bad checksum", zlb, withLength(17, badSum), "", errMemcValue},
		{"zlib truncated", zlb, withLength(17, hello[:len(hello)-3]), "", errMemcValue},
		{"zstd", zst, withLength(5, zs([]byte("hello"))), "hello", nil},
		{"zstd longer than declared", zst, withLength(4, zs([]byte("hello"))), "", errMemcValue},
		{"zstd garbage", zst, withLength(5, []byte("not zstd")), "", errMemcValue},
		// Instruction bytes: 000lllll a literal run of l+1 bytes; LLLddddd
		// (L > 0) a match of L+2 bytes from distance (d<<8) + next byte + 1.
		{"fastlz literal", fl, withLength(3, []byte{2, 'a', 'b', 'c'}), "abc", nil},
		{"fastlz run", fl, withLength(6, []byte{0, 'a', 0x60, 0}), "aaaaaa", nil},
		{"fastlz match then literal", fl, withLength(8, []byte{1, 'a', 'b', 0x20, 1, 2, 'c', 'd', 'e'}), "ababacde", nil},
		{"fastlz long match level 1", fl, withLength(11, []byte{0, 'a', 0xe0, 1, 0}), "aaaaaaaaaaa", nil},
		{"fastlz level 2 long match", fl, withLength(267, []byte{0x20, 'a', 0xe0, 255, 2, 0}), strings.Repeat("a", 267), nil},
		{"fastlz reference before start", fl, withLength(8, []byte{0, 'a', 0x60, 5}), "", errMemcValue},
		{"fastlz literal truncated", fl, withLength(8, []byte{5, 'a'}), "", errMemcValue},
		{"fastlz match truncated", fl, withLength(8, []byte{0, 'a', 0x60}), "", errMemcValue},
		{"fastlz longer than declared", fl, withLength(4, []byte{0, 'a', 0x60, 0}), "", errMemcValue},
		{"fastlz unknown level", fl, withLength(1, []byte{0x40, 'a'}), "", errMemcValue},
		{"fastlz empty", fl, withLength(1, nil), "", errMemcValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := newMemcDecoder(1024).decode(tc.flags, tc.value)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || got != nil {
					t.Fatalf("decode = %q, %v; want %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("decode = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestFastLZFarMatch checks level 2's far match (distance 8192 and more),
// which the PHP-written fixtures may not contain.
func TestFastLZFarMatch(t *testing.T) {
	want := make([]byte, 0, 8200)
	for i := 0; len(want) < 8194; i++ {
		want = append(want, byte(i*31+i/256))
	}
	// Literals for the first 8194 bytes, then a match of 3 from distance
	// 8194: the far code (low bits 31, next byte 255) and a 16-bit
	// big-endian 2, as the distance is that plus 8192.
	var src []byte
	for i := 0; i < len(want); i += 32 {
		run := want[i:min(i+32, len(want))]
		src = append(src, byte(len(run)-1))
		src = append(src, run...)
	}
	src[0] |= 0x20 // level 2
	src = append(src, 1<<5|31, 255, 0, 2)
	want = append(want, want[:3]...)
	got, err := fastlzDecode(src, len(want))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("far match: %v, equal %v", err, bytes.Equal(got, want))
	}
	if _, err := fastlzDecode(src[:len(src)-1], len(want)); err == nil {
		t.Fatal("truncated far match accepted")
	}
}

// fuzzMemcDecode is the body of the decompressors' fuzz targets: decoding
// value under flags must not panic, must stay within the declared length and
// MaxSize, and must fail with ErrTooLarge or errMemcValue if at all.
func fuzzMemcDecode(f *testing.F, flags uint32, fixture string, check func(t *testing.T, value, got []byte)) {
	for name, fx := range loadMemcFixtures(f) {
		// The 20 KiB level-2 fixture would make every mutation slow and
		// its minimization take the fuzzer's whole time; the small seeds
		// below cover level 2.
		if v := readFixture(f, name, ".value"); fx.Flags == flags && strings.Contains(name, fixture) && len(v) <= 4<<10 {
			f.Add(v)
		}
	}
	f.Add(withLength(6, []byte{0, 'a', 0x60, 0}))
	f.Add(withLength(267, []byte{0x20, 'a', 0xe0, 255, 2, 0}))
	f.Add(withLength(40, []byte{0x21, 'a', 'b', 0x3f, 255, 0, 0}))
	f.Add([]byte{})
	const maxSize = 1 << 20
	d := newMemcDecoder(maxSize)
	f.Fuzz(func(t *testing.T, value []byte) {
		got, err := d.decode(flags, value)
		if err != nil {
			if !errors.Is(err, ErrTooLarge) && !errors.Is(err, errMemcValue) {
				t.Fatalf("error %v is neither ErrTooLarge nor errMemcValue", err)
			}
			return
		}
		if n := binary.LittleEndian.Uint32(value); uint32(len(got)) > n || len(got) > maxSize {
			t.Fatalf("decoded %d bytes, declared %d", len(got), n)
		}
		if check != nil {
			check(t, value, got)
		}
	})
}

func FuzzMemcachedFastLZ(f *testing.F) {
	fuzzMemcDecode(f, memcCompressed|memcFastLZ, "fastlz", nil)
}

func FuzzMemcachedZlib(f *testing.F) {
	// What the decoder accepts, Go's own unbounded inflater reads alike.
	fuzzMemcDecode(f, memcCompressed|memcZlib, "zlib", func(t *testing.T, value, got []byte) {
		r, err := zlib.NewReader(bytes.NewReader(value[4:]))
		if err != nil {
			t.Fatal(err)
		}
		want, err := io.ReadAll(io.LimitReader(r, 1<<21))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("decoder and compress/zlib disagree: %v", err)
		}
	})
}

func FuzzMemcachedZstd(f *testing.F) {
	fuzzMemcDecode(f, memcCompressed|memcZstd, "zstd", nil)
}
