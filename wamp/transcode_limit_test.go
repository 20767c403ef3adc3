package wamp

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/wamp/handler"
)

// TestTranscodedSizeLimit: the JSON a msgpack or CBOR message becomes is
// held to Limits.MaxMessageSize; a binary payload grows by a third in
// base64 (and control bytes six-fold as \u00XX escapes), so a frame under
// the limit can transcode over it.
func TestTranscodedSizeLimit(t *testing.T) {
	const max = 2048
	f := newFixture(t, func(c *NodeConfig) {
		accessRoutes(c)
		c.Limits.MaxMessageSize = max
	})
	cases := []struct {
		name    string
		payload string // a JSON string value in PUBLISH arguments
		over    bool
	}{
		{"small", `"hello"`, false},
		{"just under", `"` + strings.Repeat("a", max-100) + `"`, false},
		// 400 control bytes: 400 bytes in the frame, 2400 in JSON.
		{"escapes grow six-fold", `"` + strings.Repeat(`\u0001`, 400) + `"`, true},
		// 1200 quotes: 1200 bytes in the frame, 2400 as \" in JSON.
		{"quotes grow two-fold", `"` + strings.Repeat(`\"`, 1200) + `"`, true},
	}
	for _, p := range binaryProtos {
		for i, tc := range cases {
			t.Run(p.String()+"/"+tc.name, func(t *testing.T) {
				peer := &fakePeer{}
				s := f.node.OpenProtocol(peer, ClientInfo{ConnID: p.String() + tc.name, Identity: handler.Identity{UserIdentifier: "u"}}, p)
				defer s.Close()
				handleBinary(t, s, peer, `[1,"realm1",{"roles":{"publisher":{}}}]`)
				in := `[16,` + string(rune('1'+i)) + `,{},"chan/a",[` + tc.payload + `]]`
				bin, err := jsonToBinary(p, []byte(in))
				if err != nil {
					t.Fatal(err)
				}
				if len(bin) > max {
					t.Fatalf("frame of %d bytes: the case must fit the transport's limit", len(bin))
				}
				err = s.Handle(context.Background(), bin)
				var le *LimitError
				if got := errors.As(err, &le) && le.Limit == LimitMessageSize; got != tc.over {
					t.Errorf("Handle: %v, want limit error %v", err, tc.over)
				}
				if !tc.over && err != nil {
					t.Errorf("Handle: %v", err)
				}
			})
		}
	}
}
