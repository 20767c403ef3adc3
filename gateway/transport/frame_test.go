package transport

import (
	"bytes"
	"compress/flate"
	"errors"
	"testing"

	"github.com/gobwas/ws"
)

// recordingSink collects what a frameReader delivers.
type recordingSink struct {
	messages []string
	controls []string
}

func (r *recordingSink) onMessage(p []byte) error {
	r.messages = append(r.messages, string(p))
	return nil
}

func (r *recordingSink) onControl(op ws.OpCode, p []byte) error {
	r.controls = append(r.controls, string([]byte{byte('0' + op)})+":"+string(p))
	return nil
}

// clientFrame encodes a masked client frame.
func clientFrame(t testing.TB, fin bool, op ws.OpCode, payload []byte) []byte {
	var b bytes.Buffer
	f := ws.NewFrame(op, fin, append([]byte(nil), payload...))
	f = ws.MaskFrameInPlace(f)
	if err := ws.WriteFrame(&b, f); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestFrameReader(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 300) // 16-bit length form
	for _, tc := range []struct {
		name     string
		frames   [][]byte
		messages []string
		controls []string
		err      error
	}{
		{"one text frame", [][]byte{clientFrame(t, true, ws.OpText, []byte("[1]"))}, []string{"[1]"}, nil, nil},
		{"16-bit length", [][]byte{clientFrame(t, true, ws.OpText, big)}, []string{string(big)}, nil, nil},
		{"two frames", [][]byte{clientFrame(t, true, ws.OpText, []byte("a")), clientFrame(t, true, ws.OpText, []byte("b"))}, []string{"a", "b"}, nil, nil},
		{"fragments with ping between (§5.4)", [][]byte{
			clientFrame(t, false, ws.OpText, []byte("ab")),
			clientFrame(t, true, ws.OpPing, []byte("p")),
			clientFrame(t, false, ws.OpContinuation, []byte("cd")),
			clientFrame(t, true, ws.OpContinuation, []byte("e")),
		}, []string{"abcde"}, []string{"9:p"}, nil},
		{"empty text", [][]byte{clientFrame(t, true, ws.OpText, nil)}, []string{""}, nil, nil},
		{"close passes to sink (§5.5.1)", [][]byte{clientFrame(t, true, ws.OpClose, []byte{3, 232})}, nil, []string{"8:\x03\xe8"}, nil},
		{"utf-8 split across fragments is fine", [][]byte{
			clientFrame(t, false, ws.OpText, []byte("\xc3")),
			clientFrame(t, true, ws.OpContinuation, []byte("\xa9")),
		}, []string{"é"}, nil, nil},
		{"binary refused", [][]byte{clientFrame(t, true, ws.OpBinary, []byte("x"))}, nil, nil, errFrameBinary},
		{"invalid utf-8 (§8.1)", [][]byte{clientFrame(t, true, ws.OpText, []byte("\xff"))}, nil, nil, errFrameUTF8},
		{"unmasked (§5.1)", [][]byte{{0x81, 0x01, 'a'}}, nil, nil, errFrameProtocol},
		{"reserved bits (§5.2)", [][]byte{{0xc1, 0x80, 0, 0, 0, 0}}, nil, nil, errFrameProtocol},
		{"reserved opcode (§5.2)", [][]byte{{0x83, 0x80, 0, 0, 0, 0}}, nil, nil, errFrameProtocol},
		{"reserved control opcode", [][]byte{{0x8b, 0x80, 0, 0, 0, 0}}, nil, nil, errFrameProtocol},
		{"fragmented control (§5.5)", [][]byte{clientFrame(t, false, ws.OpPing, nil)}, nil, nil, errFrameProtocol},
		{"control over 125 (§5.5)", [][]byte{clientFrame(t, true, ws.OpPing, big)}, nil, nil, errFrameProtocol},
		{"continuation first (§5.4)", [][]byte{clientFrame(t, true, ws.OpContinuation, []byte("a"))}, nil, nil, errFrameProtocol},
		{"new message inside fragmented (§5.4)", [][]byte{
			clientFrame(t, false, ws.OpText, []byte("a")),
			clientFrame(t, true, ws.OpText, []byte("b")),
		}, nil, nil, errFrameProtocol},
		{"frame over limit", [][]byte{clientFrame(t, true, ws.OpText, bytes.Repeat([]byte("x"), 1025))}, nil, nil, errFrameTooBig},
		{"fragments over limit", [][]byte{
			clientFrame(t, false, ws.OpText, bytes.Repeat([]byte("x"), 600)),
			clientFrame(t, true, ws.OpContinuation, bytes.Repeat([]byte("x"), 600)),
		}, nil, nil, errFrameTooBig},
		{"64-bit length claims the moon", [][]byte{{0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}, nil, nil, errFrameTooBig},
	} {
		stream := bytes.Join(tc.frames, nil)
		// Whole, and byte by byte: the result must not depend on how the
		// bytes arrive.
		for _, chunk := range []int{len(stream), 1, 3} {
			r := frameReader{maxMessage: 1024}
			sink := &recordingSink{}
			var err error
			data := append([]byte(nil), stream...)
			for len(data) > 0 && err == nil {
				n := min(chunk, len(data))
				err = r.feed(data[:n], sink)
				data = data[n:]
			}
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Errorf("%s (chunks of %d): err %v, want %v", tc.name, chunk, err, tc.err)
				continue
			}
			if tc.err == nil {
				if len(r.pending) != 0 || r.inMessage {
					t.Errorf("%s (chunks of %d): left pending %d bytes, inMessage %v", tc.name, chunk, len(r.pending), r.inMessage)
				}
			}
			if !equalStrings(sink.messages, tc.messages) || !equalStrings(sink.controls, tc.controls) {
				t.Errorf("%s (chunks of %d): messages %q controls %q, want %q %q", tc.name, chunk, sink.messages, sink.controls, tc.messages, tc.controls)
			}
		}
	}
}

// A header announcing a big frame must not make the reader reserve it.
func TestFrameReaderBuffersOnlyWhatArrived(t *testing.T) {
	r := frameReader{maxMessage: 64 << 20}
	hdr := []byte{0x81, 0xff, 0, 0, 0, 0, 0x03, 0, 0, 0, 1, 2, 3, 4} // 48 MiB, masked
	if err := r.feed(append(hdr, 'x'), &recordingSink{}); err != nil {
		t.Fatal(err)
	}
	if cap(r.pending) > 1024 {
		t.Fatalf("reserved %d bytes for a frame of which 15 arrived", cap(r.pending))
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzFrameReader feeds arbitrary bytes in arbitrary chunks: the reader
// must never panic, never deliver more than the limit, and never hold more
// pending bytes than one frame of the limit.
func FuzzFrameReader(f *testing.F) {
	f.Add(clientFrame(f, true, ws.OpText, []byte(`[2,"c","sample/sum",[1,2]]`)), uint8(1))
	f.Add(append(clientFrame(f, false, ws.OpText, []byte("ab")), clientFrame(f, true, ws.OpContinuation, []byte("c"))...), uint8(2))
	f.Add(clientFrame(f, true, ws.OpPing, []byte("p")), uint8(3))
	f.Add([]byte{0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint8(5))
	f.Add([]byte{0x81, 0xfe, 0x01, 0x00, 1, 2, 3, 4}, uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		const limit = 512
		r := frameReader{maxMessage: limit}
		sink := &limitSink{t: t, limit: limit}
		step := int(chunk%16) + 1
		for len(data) > 0 {
			n := min(step, len(data))
			if err := r.feed(data[:n], sink); err != nil {
				return
			}
			data = data[n:]
			if len(r.pending) > limit+ws.MaxHeaderSize || len(r.msg) > limit {
				t.Fatalf("buffered %d pending, %d message bytes over a %d limit", len(r.pending), len(r.msg), limit)
			}
		}
	})
}

type limitSink struct {
	t     *testing.T
	limit int
}

func (s *limitSink) onMessage(p []byte) error {
	if len(p) > s.limit {
		s.t.Fatalf("delivered %d bytes over a %d limit", len(p), s.limit)
	}
	return nil
}

func (s *limitSink) onControl(op ws.OpCode, p []byte) error {
	if len(p) > 125 {
		s.t.Fatalf("control payload of %d bytes", len(p))
	}
	return nil
}

// deflateMessage compresses msg as RFC 7692 senders do: raw deflate, sync
// flush, the 4-byte tail stripped.
func deflateMessage(t testing.TB, msg []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestSpeed)
	w.Write(msg)
	w.Flush()
	out := b.Bytes()
	if !bytes.HasSuffix(out, deflateTail) {
		t.Fatalf("flush did not end in the sync tail")
	}
	return out[:len(out)-4]
}

func compressedFrame(t testing.TB, fin bool, op ws.OpCode, payload []byte) []byte {
	f := clientFrame(t, fin, op, payload)
	f[0] |= 0x40 // RSV1
	return f
}

// TestFrameReaderBinary: a connection set binary (WAMP v2 msgpack, CBOR)
// takes binary messages, fragmented or compressed, whatever their bytes,
// and refuses text ones with 1003, as a text connection refuses binary.
func TestFrameReaderBinary(t *testing.T) {
	bin := []byte{0x93, 0x01, 0xff, 0xc0} // not UTF-8
	z := deflateMessage(t, bin)
	for _, tc := range []struct {
		name   string
		binary bool
		frames [][]byte
		want   []string
		err    error
	}{
		{"binary message", true, [][]byte{clientFrame(t, true, ws.OpBinary, bin)}, []string{string(bin)}, nil},
		{"binary in fragments", true, [][]byte{
			clientFrame(t, false, ws.OpBinary, bin[:1]),
			clientFrame(t, true, ws.OpContinuation, bin[1:]),
		}, []string{string(bin)}, nil},
		{"compressed binary", true, [][]byte{compressedFrame(t, true, ws.OpBinary, z)}, []string{string(bin)}, nil},
		{"text on a binary connection", true, [][]byte{clientFrame(t, true, ws.OpText, []byte("[]"))}, nil, errFrameText},
		{"binary on a text connection", false, [][]byte{clientFrame(t, true, ws.OpBinary, bin)}, nil, errFrameBinary},
	} {
		r := frameReader{maxMessage: 4096, deflate: true, binary: tc.binary}
		sink := &recordingSink{}
		err := r.feed(bytes.Join(tc.frames, nil), sink)
		if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
			continue
		}
		if tc.err != nil {
			if code, _ := closeCodeFor(err); code != CloseUnsupported {
				t.Errorf("%s: close code %d, want 1003", tc.name, code)
			}
		}
		if !equalStrings(sink.messages, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, sink.messages, tc.want)
		}
	}
}

func TestFrameReaderPermessageDeflate(t *testing.T) {
	msg := []byte(`[2,"c1","sample/sum",[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]]`)
	z := deflateMessage(t, msg)
	bomb := deflateMessage(t, bytes.Repeat([]byte("a"), 1<<20)) // ~1 KiB that inflates to 1 MiB
	for _, tc := range []struct {
		name    string
		deflate bool
		frames  [][]byte
		want    []string
		err     error
	}{
		{"compressed single frame", true, [][]byte{compressedFrame(t, true, ws.OpText, z)}, []string{string(msg)}, nil},
		{"compressed in fragments (RSV1 on the first only)", true, [][]byte{
			compressedFrame(t, false, ws.OpText, z[:5]),
			clientFrame(t, true, ws.OpContinuation, z[5:]),
		}, []string{string(msg)}, nil},
		{"uncompressed message is still fine", true, [][]byte{clientFrame(t, true, ws.OpText, msg)}, []string{string(msg)}, nil},
		{"RSV1 without negotiation", false, [][]byte{compressedFrame(t, true, ws.OpText, z)}, nil, errFrameProtocol},
		{"RSV1 on a continuation", true, [][]byte{
			clientFrame(t, false, ws.OpText, []byte("a")),
			compressedFrame(t, true, ws.OpContinuation, []byte("b")),
		}, nil, errFrameProtocol},
		{"RSV1 on a control frame", true, [][]byte{compressedFrame(t, true, ws.OpPing, nil)}, nil, errFrameProtocol},
		{"decompression bomb", true, [][]byte{compressedFrame(t, true, ws.OpText, bomb)}, nil, errFrameTooBig},
		{"garbage", true, [][]byte{compressedFrame(t, true, ws.OpText, []byte{0xff, 0xff, 0xff})}, nil, errFrameBadData},
	} {
		r := frameReader{maxMessage: 4096, deflate: tc.deflate}
		sink := &recordingSink{}
		err := r.feed(bytes.Join(tc.frames, nil), sink)
		if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
			continue
		}
		if !equalStrings(sink.messages, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, sink.messages, tc.want)
		}
	}
}
