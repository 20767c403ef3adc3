package cluster

import (
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestFanoutEnvelopeWireCompat pins the envelope to the bytes the previous
// release (storage.RedisFanout, commit 8e6ce97) encoded for the same
// messages, so that replicas of both releases understand each other during
// a rolling upgrade: each message encodes to those bytes, and they decode
// back to it.
func TestFanoutEnvelopeWireCompat(t *testing.T) {
	cases := []struct {
		name string
		m    FanoutMessage
		hex  string
	}{
		{
			"lists and time",
			FanoutMessage{Origin: "3f9a01bc", SentAt: time.Unix(1700000000, 123456789), Audience: Audience{ExcludeSessions: []string{"1234567890123456", "s2"}, EligibleSessions: []string{"s3"}}, Payload: []byte(`{"msg":"hello","n":[1,2,3]}`)},
			"01aab4aed8c7bfce972f083366396130316263021031323334353637383930313233343536027332010273331b7b226d7367223a2268656c6c6f222c226e223a5b312c322c335d7d",
		},
		{"minimal", FanoutMessage{Origin: "n", Payload: []byte(`"x"`)}, "0100016e000003227822"},
		{
			// What the previous release's POST /api/disconnect relayed, minus
			// the "bridged" mark this release adds (see control_legacy.go).
			"legacy disconnect",
			FanoutMessage{Origin: "node-b", SentAt: time.Unix(1700000001, 0), Payload: []byte(`{"op":"disconnect","username":"bob"}`)},
			"0180a8a69ccebfce972f066e6f64652d620000247b226f70223a22646973636f6e6e656374222c22757365726e616d65223a22626f62227d",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := hex.EncodeToString(mustEncodeFanout(t, tc.m))
			if got != tc.hex {
				t.Fatalf("encoded\n %s\nwant (previous release)\n %s", got, tc.hex)
			}
			raw, _ := hex.DecodeString(tc.hex)
			m, err := decodeFanout(raw)
			if err != nil {
				t.Fatal(err)
			}
			if m.Origin != tc.m.Origin || string(m.Payload) != string(tc.m.Payload) || !m.SentAt.Equal(tc.m.SentAt) ||
				!reflect.DeepEqual(m.Audience, tc.m.Audience) || m.Seq != 0 {
				t.Fatalf("decoded %+v, want %+v", m, tc.m)
			}
		})
	}
}

// TestFanoutEnvelopeV2 pins version 2's layout (so that a change to it is
// a deliberate new version) and checks that a message with a Seq encodes as
// version 2 and one without as version 1, which cannot carry users or
// roles.
func TestFanoutEnvelopeV2(t *testing.T) {
	m := FanoutMessage{
		Origin: "a", SentAt: time.Unix(0, 5), Epoch: 0x0102030405060708, Seq: 0x090a,
		Audience: Audience{ExcludeSessions: []string{"s"}, EligibleUsers: []string{"u", ""}, EligibleRoles: []string{"r"}},
		Payload:  []byte(`1`),
	}
	const want = "02" + "0102030405060708" + "000000000000090a" + "0a" + "0161" +
		"010173" + "00" + "00" + "02017500" + "00" + "010172" + "0131"
	b := mustEncodeFanout(t, m)
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("encoded\n %s\nwant\n %s", got, want)
	}
	got, err := decodeFanout(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("decoded %+v\nwant %+v", got, m)
	}
	// Publish writes the numbers in place after encoding.
	setFanoutSeq(b, 7, 8)
	if got, err := decodeFanout(b); err != nil || got.Epoch != 7 || got.Seq != 8 {
		t.Fatalf("after setFanoutSeq: epoch %d seq %d, %v", got.Epoch, got.Seq, err)
	}

	m.Seq = 0
	if _, err := encodeFanout(nil, &m); err == nil || !strings.Contains(err.Error(), "version 1 cannot carry them") {
		t.Fatalf("users without Seq: %v", err)
	}
	m.Audience = Audience{EligibleSessions: []string{""}}
	if b := mustEncodeFanout(t, m); b[0] != fanoutVersion1 {
		t.Fatalf("without Seq: version %d; want 1", b[0])
	}
}
