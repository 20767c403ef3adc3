package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// TestFloorFrame checks that the frame the floor writes is one valid,
// unmasked websocket text frame of exactly the asked size, with header and
// payload split as the gateway's writev sends them.
func TestFloorFrame(t *testing.T) {
	for _, tc := range []struct{ size, header int }{
		{minFrameBytes, 2}, {112, 2}, {127, 2}, {128, 4}, {200, 4}, {maxFrameBytes, 4},
	} {
		h, p := floorFrame(tc.size)
		if len(h) != tc.header || len(h)+len(p) != tc.size {
			t.Errorf("size %d: header %d + payload %d bytes, want header %d", tc.size, len(h), len(p), tc.header)
			continue
		}
		got, err := ws.ReadHeader(bufio.NewReader(bytes.NewReader(append(append([]byte(nil), h...), p...))))
		if err != nil {
			t.Errorf("size %d: %v", tc.size, err)
			continue
		}
		if !got.Fin || got.OpCode != ws.OpText || got.Masked || got.Length != int64(len(p)) {
			t.Errorf("size %d: header %+v, want a final unmasked text frame of %d bytes", tc.size, got, len(p))
		}
	}
}

// TestFloorFlags is the table of floor flags accepted and refused.
func TestFloorFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		phases  []string // accepted: the phases to run
		errLike string   // refused: part of the error
	}{
		{name: "defaults", args: nil, phases: defaultFloorPhases},
		{name: "with reading peers", args: []string{"--floor-phases", "writev,writev-read"}, phases: []string{"writev", "writev-read"}},
		{name: "with an epoll", args: []string{"--floor-phases", "writev-epoll"}, phases: []string{"writev-epoll"}},
		{name: "one phase", args: []string{"--floor-phases", "handshake"}, phases: []string{"handshake"}},
		{name: "two phases with a space", args: []string{"--floor-phases", "write, writev"}, phases: []string{"write", "writev"}},
		{name: "pinned", args: []string{"--floor-cpu", "1"}, phases: defaultFloorPhases},
		{name: "unknown phase", args: []string{"--floor-phases", "read"}, errLike: "unknown"},
		{name: "phase twice", args: []string{"--floor-phases", "write,write"}, errLike: "twice"},
		{name: "no phase", args: []string{"--floor-phases", " "}, errLike: "at least one"},
		{name: "no rounds", args: []string{"--rounds", "0"}, errLike: "--rounds"},
		{name: "too many rounds", args: []string{"--rounds", "10001"}, errLike: "--rounds"},
		{name: "frame too small", args: []string{"--frame-bytes", "2"}, errLike: "--frame-bytes"},
		{name: "frame too big", args: []string{"--frame-bytes", "65540"}, errLike: "--frame-bytes"},
		{name: "no handshakes", args: []string{"--handshakes", "0"}, errLike: "--handshakes"},
		{name: "cpu below -1", args: []string{"--floor-cpu", "-2"}, errLike: "--floor-cpu"},
		{name: "round gap", args: []string{"--floor-round-gap", "1s"}, phases: defaultFloorPhases},
		{name: "negative round gap", args: []string{"--floor-round-gap", "-1s"}, errLike: "--floor-round-gap"},
		{name: "round gap too long", args: []string{"--floor-round-gap", "2m"}, errLike: "--floor-round-gap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseFlags(append([]string{"--scenario", "floor"}, tc.args...), &bytes.Buffer{})
			if tc.errLike != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errLike) {
					t.Fatalf("error %v, want one saying %q", err, tc.errLike)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(c.FloorPhases, ",") != strings.Join(tc.phases, ",") {
				t.Fatalf("phases %q, want %q", c.FloorPhases, tc.phases)
			}
		})
	}
}

// TestRatiosToFloor is the table of the ratio arithmetic: each gateway
// figure over the floor phase it is compared with, nothing when the figure
// or that phase is missing or the floor is not positive.
func TestRatiosToFloor(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	full := &floorResults{
		Delivery:       &deliveryFloor{CPUPerWriteUs: 6.4, SlabPerSocketBytes: 3900},
		DeliveryWritev: &deliveryFloor{CPUPerWriteUs: 6.8, SlabPerSocketBytes: 4000},
		Handshake:      &handshakeFloor{CPUPerHandshakeUs: 20},
	}
	for _, tc := range []struct {
		name  string
		r     results
		floor *floorResults
		want  *floorRatios // nil: no ratios at all
	}{
		{name: "no floor", r: results{CPUPerHandshakeUs: f(100)}, floor: nil, want: nil},
		{name: "connect", r: results{CPUPerHandshakeUs: f(110)}, floor: full, want: &floorRatios{CPUPerHandshake: f(5.5)}},
		{name: "broadcast", r: results{CPUPerDeliveryUs: f(13.6)}, floor: full,
			want: &floorRatios{CPUPerDeliveryWritev: f(2), CPUPerDeliveryWrite: f(2.125)}},
		{name: "rpc", r: results{CPUPerCallUs: f(25.6)}, floor: full, want: &floorRatios{CPUPerCall: f(4)}},
		{name: "broadcast with reading peers", r: results{CPUPerDeliveryUs: f(10)},
			floor: &floorResults{DeliveryWritevRead: &deliveryFloor{CPUPerWriteUs: 8}}, want: &floorRatios{CPUPerDeliveryReading: f(1.25)}},
		{name: "idle: the writev phase's slab", r: results{RSSPerConnBytes: f(3000)}, floor: full, want: &floorRatios{RSSPerConnOverSlab: f(0.75)}},
		{name: "idle: the write phase's slab when writev has none", r: results{RSSPerConnBytes: f(3900)},
			floor: &floorResults{Delivery: &deliveryFloor{CPUPerWriteUs: 6, SlabPerSocketBytes: 3900}, DeliveryWritev: &deliveryFloor{CPUPerWriteUs: 6}},
			want:  &floorRatios{RSSPerConnOverSlab: f(1)}},
		{name: "idle: no slab measured", r: results{RSSPerConnBytes: f(3000)},
			floor: &floorResults{Handshake: &handshakeFloor{CPUPerHandshakeUs: 20}}, want: &floorRatios{}},
		{name: "phase missing", r: results{CPUPerHandshakeUs: f(100), CPUPerDeliveryUs: f(10)},
			floor: &floorResults{DeliveryWritev: &deliveryFloor{CPUPerWriteUs: 5}}, want: &floorRatios{CPUPerDeliveryWritev: f(2)}},
		{name: "zero floor", r: results{CPUPerHandshakeUs: f(100)},
			floor: &floorResults{Handshake: &handshakeFloor{CPUPerHandshakeUs: 0}}, want: &floorRatios{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ratiosToFloor(&tc.r, tc.floor)
			if (got == nil) != (tc.want == nil) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if got == nil {
				return
			}
			for _, x := range []struct {
				name      string
				got, want *float64
			}{
				{"handshake", got.CPUPerHandshake, tc.want.CPUPerHandshake},
				{"delivery writev", got.CPUPerDeliveryWritev, tc.want.CPUPerDeliveryWritev},
				{"delivery write", got.CPUPerDeliveryWrite, tc.want.CPUPerDeliveryWrite},
				{"delivery reading", got.CPUPerDeliveryReading, tc.want.CPUPerDeliveryReading},
				{"call", got.CPUPerCall, tc.want.CPUPerCall},
				{"rss over slab", got.RSSPerConnOverSlab, tc.want.RSSPerConnOverSlab},
			} {
				switch {
				case (x.got == nil) != (x.want == nil):
					t.Errorf("%s: got %v, want %v", x.name, x.got, x.want)
				case x.got != nil && math.Abs(*x.got-*x.want) > 1e-9:
					t.Errorf("%s: got %g, want %g", x.name, *x.got, *x.want)
				}
			}
		})
	}
}

// TestBroadcastFrameBytes checks the floor's frame size for a broadcast
// against the EVENT a v1 subscriber gets from acme.topic / acme.relay,
// built here with encoding/json.
func TestBroadcastFrameBytes(t *testing.T) {
	for _, tc := range []struct {
		topic   string
		payload int
	}{
		{"acme/relay/bench", 100}, {"acme/channel/bench", 100}, {"acme/relay/x", 30}, {"acme/relay/bench", 1000}, {"acme/relay/bench", 60000},
	} {
		ev := eventJSON(1, time.Unix(0, 0), tc.payload)
		msg, err := json.Marshal([]any{8, tc.topic, map[string]json.RawMessage{"msg": ev}})
		if err != nil {
			t.Fatal(err)
		}
		if len(ev) != tc.payload {
			t.Fatalf("event of %d bytes, want %d", len(ev), tc.payload)
		}
		header := 2
		if len(msg) > 125 {
			header = 4
		}
		if got, want := broadcastFrameBytes(tc.topic, tc.payload), len(msg)+header; got != want {
			t.Errorf("%s, %d bytes: %d, want %d (%s)", tc.topic, tc.payload, got, want, msg[:min(len(msg), 60)])
		}
	}
}

// TestWithFloorFlags: --with-floor is accepted by the gateway scenarios
// only, checks the floor flags, and takes the broadcast's frame size unless
// --frame-bytes is given.
func TestWithFloorFlags(t *testing.T) {
	parse := func(args ...string) (*config, error) { return parseFlags(args, &bytes.Buffer{}) }
	c, err := parse("--scenario", "broadcast", "--with-floor", "--topic", "acme/relay/bench")
	if err != nil {
		t.Fatal(err)
	}
	if c.FrameBytes != broadcastFrameBytes("acme/relay/bench", 100) || c.FloorPairs != 9000 || len(c.FloorPhases) != 3 {
		t.Errorf("broadcast --with-floor: frame %d, pairs %d, phases %v", c.FrameBytes, c.FloorPairs, c.FloorPhases)
	}
	if c, err = parse("--scenario", "broadcast", "--with-floor", "--frame-bytes", "112"); err != nil || c.FrameBytes != 112 {
		t.Errorf("--frame-bytes 112: %v, %+v", err, c)
	}
	if c, err = parse("--scenario", "rpc", "--with-floor", "--floor-pairs", "50", "--floor-phases", "write"); err != nil || c.FloorPairs != 50 || c.FrameBytes != 112 {
		t.Errorf("rpc --with-floor: %v, %+v", err, c)
	}
	if c, err = parse("--scenario", "connect"); err != nil || c.WithFloor || c.FloorPairs != 0 {
		t.Errorf("connect without the floor: %v, %+v", err, c)
	}
	if c, err = parse("--scenario", "floor", "--conns", "30"); err != nil || c.FloorPairs != 30 {
		t.Errorf("floor scenario: %v, %+v", err, c)
	}
	for _, bad := range [][]string{
		{"--scenario", "floor", "--with-floor"},
		{"--scenario", "idle", "--with-floor", "--floor-pairs", "0"},
		{"--scenario", "idle", "--with-floor", "--rounds", "0"},
		{"--scenario", "idle", "--with-floor", "--floor-phases", "read"},
	} {
		if _, err := parse(bad...); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
