// Package cluster holds what gateway replicas sharing one Redis need of
// each other, so that they behave as one gateway:
//
//   - Fanout (fanout*.go): topic broadcasts made on one replica reach the
//     subscribers on the others, over Redis pub/sub (sharded pub/sub in a
//     Redis Cluster), through bounded queues that drop and count when full;
//     each replica subscribes only to the topics it has subscribers for.
//     It is the WAMP node's Relay.
//   - Control (control*.go): commands between replicas on a channel of
//     their own, Prefix+"control", apart from the broadcasts: for now
//     "disconnect this user", which POST /api/disconnect sends so that the
//     user's connections close on every replica.
//   - Clients (clients.go): the handlers' ClientManipulator when the client
//     storage is shared: lookups by user, role or "all" find the clients of
//     every replica.
//   - Subscribe (subscribe.go): receiving a channel every replica listens
//     to by itself, such as the push channel.
//
// Delivery between replicas is at most once: Redis pub/sub keeps nothing
// for a replica whose subscription is down, and a full queue drops.
//
// # Rolling upgrades
//
// Replicas of this release and of the previous one may share Redis while
// a deployment rolls. The fan-out envelope (fanout_envelope.go) and its
// channels (Prefix+"fanout:"+topic) are unchanged, so broadcasts cross
// between the two releases both ways. The previous release had no control
// channel: it carried disconnects as a broadcast on the topic
// "\x00wsgate-control" of the fan-out. Control bridges to it
// (control_legacy.go): it sends each disconnect on both channels and
// listens on both, skipping the copies that replicas of this release send
// in the old form, so a disconnect reaches every replica, of either
// release, whichever one the application calls; each replica carries it
// out once. The Fanout refuses to relay or subscribe a topic holding a NUL
// byte, so no client of this release can broadcast on, or listen to, the
// old control topic.
package cluster
