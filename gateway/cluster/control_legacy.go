package cluster

import (
	"encoding/json"
	"time"
)

// The bridge to the previous release's disconnects, for rolling upgrades.
//
// That release had no control channel: it sent a disconnect as a fan-out
// broadcast on the topic "\x00wsgate-control" (channel
// Prefix+"fanout:\x00wsgate-control", the fan-out envelope around the JSON
// {"op":"disconnect","username":"<user>"}), which its replicas subscribed
// to at start. So that a disconnect reaches every replica whichever release
// takes it, Control also
//
//   - publishes each command there in that form, marked "bridged":true
//     (older replicas ignore the field and carry it out), and
//   - listens there, carrying out what older replicas send and skipping
//     what carries the mark (the sender also wrote it to the control
//     stream, where this replica reads it).
//
// The Fanout refuses topics holding a NUL byte (see relayable), so no
// client broadcast ever reaches that channel from this release.
//
// A failure to publish here does not fail the command (see Disconnect):
// the stream is what this release trusts, and a roll is brief.
//
// Remove this file, and the legacy channel from Control, in the release
// after the one that added the control stream: a replica of that release
// and one of this one then talk on Prefix+"control-stream" alone.

// legacyControlTopic is the previous release's control topic.
const legacyControlTopic = "\x00wsgate-control"

// legacyCommand is the previous release's command, the payload of a
// fan-out envelope.
type legacyCommand struct {
	Op       string `json:"op"`
	Username string `json:"username,omitempty"`
	// Bridged marks a command sent by this release, which also wrote it
	// to the control stream.
	Bridged bool `json:"bridged,omitempty"`
}

// legacyControlChannel is the previous release's control channel.
func legacyControlChannel(prefix string) string { return prefix + "fanout:" + legacyControlTopic }

// legacyDisconnect is the fan-out envelope of a bridged disconnect.
func legacyDisconnect(node, user string) ([]byte, error) {
	payload, err := json.Marshal(legacyCommand{Op: controlDisconnect, Username: user, Bridged: true})
	if err != nil {
		return nil, err
	}
	return encodeFanout(nil, &FanoutMessage{Payload: payload, Origin: node, SentAt: time.Now()})
}

// receiveLegacy carries out a disconnect sent by a replica of the previous
// release.
func (c *Control) receiveLegacy(data []byte) {
	m, own, err := decodeFanoutExcept(data, c.node)
	switch {
	case own:
		return // our own bridged copy, echoed by Redis
	case err != nil:
		c.warn.warn("decode", "legacy control message dropped", "bytes", len(data), "error", err)
		return
	}
	var cmd legacyCommand
	if err := json.Unmarshal(m.Payload, &cmd); err != nil || cmd.Op != controlDisconnect || cmd.Username == "" {
		c.warn.warn("op", "legacy control command ignored", "origin", m.Origin, "bytes", len(m.Payload))
		return
	}
	if cmd.Bridged {
		return // read from the control stream
	}
	// Pub/sub is live: every connection of the user here now was
	// established before the command (the old release sends no time).
	c.handle(cmd.Username, time.Now())
}
