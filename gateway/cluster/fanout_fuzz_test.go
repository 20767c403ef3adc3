package cluster

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"reflect"
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

// splitFanoutAudience turns a fuzzed string into an Audience: up to six
// id lists separated by "|", in envelope order.
func splitFanoutAudience(s string) Audience {
	var a Audience
	parts := strings.SplitN(s, "|", 6)
	for i, l := range a.lists() {
		if i < len(parts) {
			*l = splitFanoutIDs(parts[i])
		}
	}
	return a
}

// fanoutEncodable reports whether m is within the envelope's limits,
// judged independently of encodeFanout.
func fanoutEncodable(m *FanoutMessage) bool {
	if len(m.Origin) == 0 || len(m.Origin) > fanoutMaxIDLen || len(m.Payload) == 0 {
		return false
	}
	if len(m.Details) > 0 && (m.Seq == 0 || len(m.Details) > fanoutMaxDetails || m.Details[0] != '{' || !json.Valid(m.Details)) {
		return false
	}
	a := m.Audience
	all := [][]string{a.ExcludeSessions, a.EligibleSessions, a.ExcludeUsers, a.EligibleUsers, a.ExcludeRoles, a.EligibleRoles}
	for i, l := range all {
		if len(l) > fanoutMaxIDs || (m.Seq == 0 && i >= 2 && len(l) > 0) {
			return false
		}
		for _, id := range l {
			if len(id) > fanoutMaxIDLen {
				return false
			}
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
		Audience: Audience{ExcludeSessions: []string{"s1", "s2"}, EligibleSessions: []string{"s3"}},
		Payload:  []byte(`{"a":[1,2,{"b":null}],"c":"\u00e9"}`),
	})
	minimal := enc(FanoutMessage{Origin: "n", Payload: []byte("0")})
	negative := enc(FanoutMessage{Origin: "n", SentAt: time.Unix(-5, 0), Payload: []byte(`"x"`)})
	huge := binary.AppendUvarint([]byte{fanoutVersion1, 0, 1, 'n'}, 1<<40) // count far past the bytes
	overlong := []byte{fanoutVersion1, 0x80, 0x00, 1, 'n', 0, 0, 1, '1'}   // t = 0 in two bytes
	validV2 := enc(FanoutMessage{
		Origin: "node-a", SentAt: time.Unix(1700000000, 123456789), Epoch: 1700000000123456789, Seq: 42,
		Audience: Audience{
			ExcludeSessions: []string{"s1"}, EligibleSessions: []string{""},
			ExcludeUsers: []string{"mallory"}, EligibleUsers: []string{"alice", "bob"},
			ExcludeRoles: []string{"guest"}, EligibleRoles: []string{"admin"},
		},
		Payload: []byte(`{"a":1}`),
	})
	minimalV2 := enc(FanoutMessage{Origin: "n", Seq: 1, Payload: []byte("0")})
	seqZero := slices.Clone(minimalV2)
	seqZero[fanoutHeaderV2-1] = 0
	return [][]byte{
		valid, minimal, negative, huge, overlong,
		valid[:len(valid)-1],                 // truncated payload
		append(slices.Clone(minimal), 0),     // trailing byte
		append([]byte{3}, minimal[1:]...),    // unknown version
		{fanoutVersion1, 0, 0, 0, 0, 1, '1'}, // empty origin
		{fanoutVersion1, 0, 1, 'n', 0, 0, 0}, // empty payload
		{fanoutVersion1, 0, 1, 'n', 0, 0, 2, '{', '}'},
		{fanoutVersion1, 0, 1, 'n', 0, 0, 1, '{'},                                          // payload not JSON
		{fanoutVersion1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // varint overflow
		{},
		validV2, minimalV2,
		seqZero,                           // version 2 with Seq 0: version 1's form
		minimalV2[:fanoutHeaderV2-1],      // truncated in the sequence number
		append([]byte{2}, minimal[1:]...), // a version 1 body under version 2
		validV2[:len(validV2)-1],          // truncated payload
	}
}

// FuzzFanoutEnvelope checks the envelope decoder against arbitrary bytes
// (no panic, a wrapped errFanoutEnvelope or an envelope whose re-encoding is
// the same bytes) and encode→decode round trips of arbitrary messages.
func FuzzFanoutEnvelope(f *testing.F) {
	for i, raw := range fanoutSeeds(f) {
		f.Add(raw, "node-a", int64(i)*1e9, uint64(i), uint64(i%3), "s1,s2||u", []byte(`{"n":1}`))
	}
	f.Add([]byte{}, "", int64(0), uint64(0), uint64(0), "", []byte{})
	// A disclosed publisher (odd epoch: the payload doubles as details),
	// in several pieces, and a forged piece in the exclude list.
	withDetails := mustEncodeFanout(f, FanoutMessage{Origin: "n", Epoch: 1, Seq: 2, Payload: []byte(`1`),
		Audience: Audience{ExcludeSessions: []string{"s1"}}, Details: []byte(`{"publisher_authid":"` + strings.Repeat("a", 600) + `"}`)})
	f.Add(withDetails, "n", int64(1), uint64(3), uint64(1), "s1,\x00D{}", []byte(`{"publisher":1,"publisher_authid":"alice"}`))
	f.Add([]byte{}, "n", int64(-1), uint64(1), uint64(1), ",|,,|,|||", []byte(`[1, 2 ,3] `))
	f.Add([]byte{}, strings.Repeat("o", 256), int64(1), uint64(0), uint64(0), strings.Repeat("x", 256), []byte("true"))
	f.Add([]byte{}, "n", int64(1<<62), uint64(1<<63), uint64(1<<64-1), "é,\x00,\xff|a|b|c|d|e,f", []byte(`"\ud800"`))
	f.Fuzz(func(t *testing.T, raw []byte, origin string, nanos int64, epoch, seq uint64, lists string, payload []byte) {
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

		m := FanoutMessage{Origin: origin, Audience: splitFanoutAudience(lists), Payload: payload, Seq: seq}
		if seq != 0 {
			m.Epoch = epoch
		}
		if epoch%2 == 1 {
			// Disclosure: the payload doubles as details (valid or not).
			m.Details = payload
		}
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
		want := m.Audience
		if m.Seq != 0 {
			// Version 2 leaves out the excluded "sessions" starting with
			// NUL: no session has such an id, and they would pass for
			// details.
			want.ExcludeSessions = slices.DeleteFunc(slices.Clone(want.ExcludeSessions), func(id string) bool { return strings.HasPrefix(id, "\x00") })
			if len(want.ExcludeSessions) == 0 {
				want.ExcludeSessions = nil
			}
		}
		if got.Origin != m.Origin || !bytes.Equal(got.Payload, m.Payload) || !got.SentAt.Equal(m.SentAt) || !bytes.Equal(got.Details, m.Details) ||
			!reflect.DeepEqual(got.Audience, want) || got.Epoch != m.Epoch || got.Seq != m.Seq || got.Topic != "" {
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
		{seeds[3], "exclude sessions at byte 10: 1099511627776 ids over the limit 65536"},
		{seeds[4], "non-minimal varint"},
		{seeds[5], "length 35 but 34 bytes left"},
		{seeds[6], "1 trailing bytes"},
		{seeds[7], "unknown version 3"},
		{seeds[8], "origin at byte 3: empty"},
		{seeds[9], "payload at byte 7: not a JSON value"},
		{seeds[11], "not a JSON value"},
		{seeds[12], "overflows 64 bits"},
		{seeds[13], "empty"},
		{seeds[16], "sequence at byte 1: 0 in a version 2 envelope"},
		{seeds[17], "sequence at byte 1: truncated"},
		{seeds[18], "sequence at byte 1: truncated"},
		{seeds[19], "length 7 but 6 bytes left"},
		{bytes.Repeat([]byte{1}, fanoutMaxEnvelope+1), "over the limit"},
	}
	for _, tc := range cases {
		_, err := decodeFanout(tc.raw)
		if err == nil || !errors.Is(err, errFanoutEnvelope) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("decode %.40x: %v; want an error containing %q", tc.raw, err, tc.want)
		}
	}
	for _, raw := range [][]byte{seeds[0], seeds[1], seeds[2], seeds[10], seeds[14], seeds[15]} {
		if _, err := decodeFanout(raw); err != nil {
			t.Errorf("decode %x: %v", raw, err)
		}
	}
}
