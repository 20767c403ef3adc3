package cluster

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// decodePrevious decodes an envelope as the previous release did (version
// 2: the six lists and the payload, nothing after it), without knowing of
// details.
func decodePrevious(t *testing.T, b []byte) FanoutMessage {
	t.Helper()
	var m FanoutMessage
	r, err := decodeFanoutHead(b, &m)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range m.Audience.lists() {
		if *l, err = r.ids(fanoutListNames[i]); err != nil {
			t.Fatal(err)
		}
	}
	if m.Payload, err = r.bytes("payload", fanoutMaxEnvelope); err != nil {
		t.Fatal(err)
	}
	if r.off != len(b) || !json.Valid(m.Payload) {
		t.Fatalf("previous release would refuse %x", b)
	}
	return m
}

// TestFanoutEnvelopeDetails: a disclosed publisher's details go to the
// other replicas of this release, and the previous release reads the same
// envelope as an undisclosed event whose exclude list names no session.
func TestFanoutEnvelopeDetails(t *testing.T) {
	small := []byte(`{"publisher":123,"publisher_authid":"alice","publisher_authrole":"ROLE_USER"}`)
	long := []byte(`{"publisher_authid":"` + strings.Repeat("é", 300) + `","publisher_authrole":"x"}`)
	cases := []struct {
		name     string
		exclude  []string
		details  []byte
		wantExcl []string
		pieces   int
	}{
		{"none", []string{"s1"}, nil, []string{"s1"}, 0},
		{"small", nil, small, nil, 1},
		{"with sessions", []string{"s1", "42"}, small, []string{"s1", "42"}, 1},
		{"several pieces", []string{"s1"}, long, []string{"s1"}, 3},
		// A client's exclude list with NUL-prefixed ids: left out, so that
		// it cannot pass for details.
		{"forged", []string{"\x00D{\"publisher_authid\":\"admin\"}", "s1", "\x00x"}, nil, []string{"s1"}, 0},
		{"forged with details", []string{"\x00D{}", "s1"}, small, []string{"s1"}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := FanoutMessage{Origin: "a", SentAt: time.Unix(1, 0), Epoch: 1, Seq: 2, Payload: []byte(`["hi"]`),
				Audience: Audience{ExcludeSessions: tc.exclude, EligibleRoles: []string{"r"}}, Details: tc.details}
			b := mustEncodeFanout(t, in)
			got, err := decodeFanout(b)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Details, tc.details) || !reflect.DeepEqual(got.ExcludeSessions, tc.wantExcl) {
				t.Fatalf("decoded details %s exclude %q, want %s %q", got.Details, got.ExcludeSessions, tc.details, tc.wantExcl)
			}
			prev := decodePrevious(t, b)
			if n := len(prev.ExcludeSessions) - len(tc.wantExcl); n != tc.pieces {
				t.Fatalf("previous release sees %d extra exclude entries, want %d", n, tc.pieces)
			}
			for _, id := range prev.ExcludeSessions[len(tc.wantExcl):] {
				if id[0] != 0 {
					t.Fatalf("piece %q could be a session id", id)
				}
			}
			if !reflect.DeepEqual(prev.EligibleRoles, in.EligibleRoles) || string(prev.Payload) != `["hi"]` {
				t.Fatalf("previous release decoded %+v", prev)
			}
		})
	}
}

// TestFanoutEnvelopeDetailsRefused: what the encoder will not send and
// the decoder will not take.
func TestFanoutEnvelopeDetailsRefused(t *testing.T) {
	for name, m := range map[string]FanoutMessage{
		"version 1":    {Origin: "a", Payload: []byte(`1`), Details: []byte(`{}`)},
		"not object":   {Origin: "a", Payload: []byte(`1`), Seq: 1, Details: []byte(`[1]`)},
		"not JSON":     {Origin: "a", Payload: []byte(`1`), Seq: 1, Details: []byte(`{"a":`)},
		"over 4 KiB":   {Origin: "a", Payload: []byte(`1`), Seq: 1, Details: []byte(`{"a":"` + strings.Repeat("x", fanoutMaxDetails) + `"}`)},
		"leading junk": {Origin: "a", Payload: []byte(`1`), Seq: 1, Details: []byte(` {}`)},
	} {
		if _, err := encodeFanout(nil, &m); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	// Hand-made envelopes (through the version 1 list encoder, which
	// writes ids as given) with NUL entries out of place.
	for name, excl := range map[string][]string{
		"valid (control)":        {"s1", "\x00D{}"},
		"piece before a session": {"\x00D{}", "s1"},
		"unknown mark":           {"s1", "\x00X{}"},
		"empty piece":            {"\x00D{}", "\x00D"},
		"short inner piece":      {"\x00D{", "\x00D}"},
		"not an object":          {"\x00D[]"},
	} {
		raw := []byte{fanoutVersion2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 'a', byte(len(excl))}
		for _, id := range excl {
			raw = appendFanoutString(raw, id)
		}
		raw = append(raw, 0, 0, 0, 0, 0, 1, '1')
		_, err := decodeFanout(raw)
		if valid := name == "valid (control)"; (err == nil) != valid {
			t.Errorf("%s: decode error %v", name, err)
		}
	}
}

// TestFanoutRelaysDetails: through real Redis, in each mode (pub/sub,
// sharded, streams), a disclosed publisher's details reach the other
// replica with the event, and an undisclosed event arrives without them.
func TestFanoutRelaysDetails(t *testing.T) {
	modes := []struct {
		name    string
		sharded bool
		mode    string
	}{{"classic", false, FanoutPubSub}, {"sharded", true, FanoutPubSub}, {"streams", false, FanoutStreams}}
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) {
			env := standaloneFanoutEnv(t, md.sharded)
			prefix := uniqueName(t, "wsgate_t_") + ":"
			mk := func(node string) *fanoutNode {
				return newFanoutNode(t, FanoutOptions{Redis: env.redis, Prefix: prefix, NodeID: node, Mode: md.mode})
			}
			a, b := mk("node-a"), mk("node-b")
			const T = "chat/room"
			b.Watch(T)
			pollFor(t, 10*time.Second, "subscription", func() bool { return b.Watching() == 1 })
			details := []byte(`{"publisher":7,"publisher_authid":"alice","publisher_authrole":"ROLE_USER"}`)
			a.PublishDetails(T, []byte(`["disclosed"]`), Audience{ExcludeSessions: []string{"s1"}}, details)
			a.Publish(T, []byte(`["plain"]`), Audience{})
			pollFor(t, 10*time.Second, "both events", func() bool { return len(b.rec.payloads(T)) == 2 })
			for _, m := range b.rec.all() {
				want := ""
				if string(m.Payload) == `["disclosed"]` {
					want = string(details)
					if len(m.ExcludeSessions) != 1 || m.ExcludeSessions[0] != "s1" {
						t.Errorf("exclude %q, want [s1]", m.ExcludeSessions)
					}
				}
				if string(m.Details) != want {
					t.Errorf("%s: details %s, want %s", m.Payload, m.Details, want)
				}
			}
		})
	}
}
