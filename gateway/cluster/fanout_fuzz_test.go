package cluster

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// splitFanoutIDs turns a fuzzed string into an id list: "" is no list.
func splitFanoutIDs(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// fanoutEncodable reports whether m is within the envelope's limits,
// judged independently of encodeFanout.
func fanoutEncodable(m *FanoutMessage) bool {
	if len(m.Origin) == 0 || len(m.Origin) > fanoutMaxIDLen || len(m.Payload) == 0 ||
		len(m.Exclude) > fanoutMaxIDs || len(m.Eligible) > fanoutMaxIDs {
		return false
	}
	for _, id := range slices.Concat(m.Exclude, m.Eligible) {
		if len(id) > fanoutMaxIDLen {
			return false
		}
	}
	// Fuzzed messages stay far below fanoutMaxEnvelope.
	return true
}

// fanoutSeeds are envelopes and near-envelopes for the fuzzer to start from.
func fanoutSeeds(t testing.TB) [][]byte {
	enc := func(m FanoutMessage) []byte { return mustEncodeFanout(t, m) }
	valid := enc(FanoutMessage{
		Origin: "node-a", SentAt: time.Unix(1700000000, 123456789),
		Exclude: []string{"s1", "s2"}, Eligible: []string{"s3"},
		Payload: []byte(`{"a":[1,2,{"b":null}],"c":"\u00e9"}`),
	})
	minimal := enc(FanoutMessage{Origin: "n", Payload: []byte("0")})
	negative := enc(FanoutMessage{Origin: "n", SentAt: time.Unix(-5, 0), Payload: []byte(`"x"`)})
	huge := binary.AppendUvarint([]byte{fanoutVersion, 0, 1, 'n'}, 1<<40) // count far past the bytes
	overlong := []byte{fanoutVersion, 0x80, 0x00, 1, 'n', 0, 0, 1, '1'}   // t = 0 in two bytes
	return [][]byte{
		valid, minimal, negative, huge, overlong,
		valid[:len(valid)-1],                // truncated payload
		append(slices.Clone(minimal), 0),    // trailing byte
		append([]byte{2}, minimal[1:]...),   // unknown version
		{fanoutVersion, 0, 0, 0, 0, 1, '1'}, // empty origin
		{fanoutVersion, 0, 1, 'n', 0, 0, 0}, // empty payload
		{fanoutVersion, 0, 1, 'n', 0, 0, 2, '{', '}'},
		{fanoutVersion, 0, 1, 'n', 0, 0, 1, '{'},                                          // payload not JSON
		{fanoutVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // varint overflow
		{},
	}
}

// FuzzFanoutEnvelope checks the envelope decoder against arbitrary bytes
// (no panic, a wrapped errFanoutEnvelope or an envelope whose re-encoding is
// the same bytes) and encode→decode round trips of arbitrary messages.
func FuzzFanoutEnvelope(f *testing.F) {
	for i, raw := range fanoutSeeds(f) {
		f.Add(raw, "node-a", int64(i)*1e9, "s1,s2", "", []byte(`{"n":1}`))
	}
	f.Add([]byte{}, "", int64(0), "", "", []byte{})
	f.Add([]byte{}, "n", int64(-1), ",", ",,", []byte(`[1, 2 ,3] `))
	f.Add([]byte{}, strings.Repeat("o", 256), int64(1), strings.Repeat("x", 256), "", []byte("true"))
	f.Add([]byte{}, "n", int64(1<<62), "é,\x00,\xff", "a", []byte(`"\ud800"`))
	f.Fuzz(func(t *testing.T, raw []byte, origin string, nanos int64, exclude, eligible string, payload []byte) {
		if m, err := decodeFanout(raw); err != nil {
			if !errors.Is(err, errFanoutEnvelope) {
				t.Fatalf("decode error %v does not wrap errFanoutEnvelope", err)
			}
		} else {
			re, err := encodeFanout(nil, &m)
			if err != nil {
				t.Fatalf("decoded %+v but cannot encode it: %v", m, err)
			}
			if !bytes.Equal(re, raw) {
				t.Fatalf("decode→encode changed the bytes:\n in %x\nout %x", raw, re)
			}
		}

		m := FanoutMessage{Origin: origin, Exclude: splitFanoutIDs(exclude), Eligible: splitFanoutIDs(eligible), Payload: payload}
		if nanos != 0 {
			m.SentAt = time.Unix(0, nanos)
		}
		b, err := encodeFanout([]byte("prefix"), &m)
		if ok := fanoutEncodable(&m); ok != (err == nil) {
			t.Fatalf("encodable %v but encode error %v", ok, err)
		}
		if err != nil {
			if string(b) != "prefix" {
				t.Fatalf("failed encode appended %q", b)
			}
			return
		}
		got, err := decodeFanout(b[len("prefix"):])
		if !json.Valid(payload) {
			if err == nil {
				t.Fatalf("payload %q is not JSON but decoded", payload)
			}
			return
		}
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if got.Origin != m.Origin || !bytes.Equal(got.Payload, m.Payload) || !got.SentAt.Equal(m.SentAt) ||
			!slices.Equal(got.Exclude, m.Exclude) || !slices.Equal(got.Eligible, m.Eligible) || got.Topic != "" {
			t.Fatalf("round trip:\n in %+v\nout %+v", m, got)
		}
	})
}

// TestDecodeFanoutErrors: each malformed seed fails with a message that
// says what is wrong.
func TestDecodeFanoutErrors(t *testing.T) {
	seeds := fanoutSeeds(t)
	cases := []struct {
		raw  []byte
		want string
	}{
		{seeds[3], "exclude at byte 10: 1099511627776 ids over the limit 65536"},
		{seeds[4], "non-minimal varint"},
		{seeds[5], "length 35 but 34 bytes left"},
		{seeds[6], "1 trailing bytes"},
		{seeds[7], "unknown version 2"},
		{seeds[8], "origin at byte 3: empty"},
		{seeds[9], "payload at byte 7: not a JSON value"},
		{seeds[11], "not a JSON value"},
		{seeds[12], "overflows 64 bits"},
		{seeds[13], "empty"},
		{bytes.Repeat([]byte{1}, fanoutMaxEnvelope+1), "over the limit"},
	}
	for _, tc := range cases {
		_, err := decodeFanout(tc.raw)
		if err == nil || !errors.Is(err, errFanoutEnvelope) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("decode %.40x: %v; want an error containing %q", tc.raw, err, tc.want)
		}
	}
	for _, raw := range [][]byte{seeds[0], seeds[1], seeds[2], seeds[10]} {
		if _, err := decodeFanout(raw); err != nil {
			t.Errorf("decode %x: %v", raw, err)
		}
	}
}
