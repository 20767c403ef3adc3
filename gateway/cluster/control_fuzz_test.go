package cluster

import (
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"
)

// FuzzControlCommand feeds arbitrary entries of the command stream (and of
// the previous release's channel) to the receiver: it must never panic,
// and it may carry out only a well-formed disconnect of another replica,
// for a non-empty user, with the time the command says.
func FuzzControlCommand(f *testing.F) {
	for _, seed := range []string{
		`{"v":1,"op":"disconnect","origin":"node-a","username":"jdoe","at":1765000000000}`,
		`{"v":1,"op":"disconnect","origin":"self","username":"jdoe","at":1765000000000}`,
		`{"v":2,"op":"disconnect","origin":"node-a","username":"jdoe","at":1}`,
		`{"v":1,"op":"kick","origin":"node-a","username":"jdoe","at":1}`,
		`{"v":1,"op":"disconnect","origin":"node-a","username":"","at":1}`,
		`{"v":1,"op":"disconnect","origin":"node-a","username":"jdoe"}`,
		`{"v":1,"op":"disconnect","origin":"node-a","username":"jdoe","at":-5}`,
		`{"v":1,"op":"disconnect","origin":"node-a","username":"jdoe","at":1e30}`,
		`[]`, `null`, `{`, ``,
	} {
		f.Add([]byte(seed), false)
	}
	legacy, err := legacyDisconnect("node-old", "jdoe")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(legacy, true)
	f.Fuzz(func(t *testing.T, msg []byte, viaLegacy bool) {
		var got []string
		c := &Control{
			node:   "self",
			warn:   newWarner(slog.New(slog.NewTextHandler(io.Discard, nil))),
			handle: func(user string, before time.Time) { got = append(got, user) },
		}
		if viaLegacy {
			c.receiveLegacy(msg)
			return
		}
		c.receive(msg)
		if len(got) == 0 {
			return
		}
		var cmd controlCommand
		if err := json.Unmarshal(msg, &cmd); err != nil {
			t.Fatalf("carried out %q from an entry that is not JSON: %q", got, msg)
		}
		if len(got) != 1 || got[0] != cmd.Username || cmd.Username == "" || cmd.V != controlVersion ||
			cmd.Op != controlDisconnect || cmd.Origin == "" || cmd.Origin == "self" || cmd.At <= 0 {
			t.Fatalf("carried out %q from %q", got, msg)
		}
	})
}
