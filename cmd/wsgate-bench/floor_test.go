package main

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

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
		{name: "defaults", args: nil, phases: floorPhases},
		{name: "one phase", args: []string{"--floor-phases", "handshake"}, phases: []string{"handshake"}},
		{name: "two phases with a space", args: []string{"--floor-phases", "write, writev"}, phases: []string{"write", "writev"}},
		{name: "pinned", args: []string{"--floor-cpu", "1"}, phases: floorPhases},
		{name: "unknown phase", args: []string{"--floor-phases", "read"}, errLike: "unknown"},
		{name: "phase twice", args: []string{"--floor-phases", "write,write"}, errLike: "twice"},
		{name: "no phase", args: []string{"--floor-phases", " "}, errLike: "at least one"},
		{name: "no rounds", args: []string{"--rounds", "0"}, errLike: "--rounds"},
		{name: "too many rounds", args: []string{"--rounds", "10001"}, errLike: "--rounds"},
		{name: "frame too small", args: []string{"--frame-bytes", "2"}, errLike: "--frame-bytes"},
		{name: "frame too big", args: []string{"--frame-bytes", "65540"}, errLike: "--frame-bytes"},
		{name: "no handshakes", args: []string{"--handshakes", "0"}, errLike: "--handshakes"},
		{name: "cpu below -1", args: []string{"--floor-cpu", "-2"}, errLike: "--floor-cpu"},
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
