// Package cluster holds what gateway replicas sharing one Redis need of
// each other, so that they behave as one gateway:
//
//   - Fanout (fanout*.go): topic broadcasts made on one replica reach the
//     subscribers on the others, over Redis pub/sub (sharded pub/sub in a
//     Redis Cluster), through bounded queues that drop and count when full;
//     each replica subscribes only to the topics it has subscribers for.
//     Or, in streams mode, through one Redis stream every replica reads.
//     It is the WAMP node's Relay.
//   - Control (control*.go): commands between replicas on a Redis stream
//     of their own, Prefix+"control-stream", apart from the broadcasts: for
//     now "disconnect this user", which POST /api/disconnect sends so that
//     the user's connections close on every replica. A command is sent once
//     Redis took it (else the sender gets ErrControlUnavailable and the API
//     answers 503); every replica reads the stream from its own start and,
//     after losing its link, resumes where it stopped, so each live replica
//     carries out each command kept within the retention (default 10
//     minutes). A command carries its sender's time and closes only the
//     connections established by then (give or take 500 ms of clock
//     difference), so one read late spares the user's newer connections.
//   - Clients (clients.go): the handlers' ClientManipulator when the client
//     storage is shared: lookups by user, role or "all" find the clients of
//     every replica.
//   - Subscribe (subscribe.go): receiving a channel every replica listens
//     to by itself, such as the push channel.
//
// Broadcasts between replicas are delivered at most once in pub/sub mode:
// Redis pub/sub keeps nothing for a replica whose subscription is down,
// and a full queue drops; every such loss is counted (below). Control
// commands are not: they wait in their stream.
//
// # Loss is counted
//
// Each replica numbers what it relays, at Publish time: per topic in
// pub/sub mode (a replica hears only the topics it watches, so only a
// per-topic count is contiguous where it is heard), per replica in streams
// mode (every replica reads everything), within an epoch that starts at
// the replica's start time and moves on when its (bounded) table of topics
// fills. A receiver keeps the last number per (origin, topic), bounded
// likewise, and reports each hole to FanoutObserver.Lost
// (wsgate_fanout_lost_total{peer}): messages the origin dropped (full
// queue, failed PUBLISH, also counted there as Dropped) and messages Redis
// did not bring (subscription down) alike. A number at or before the last
// one is a Duplicate: delivered all the same in pub/sub mode (where it may
// be a late original), dropped in streams mode (where one origin's
// messages are in order, so it is a copy). A stream's first message, a
// new epoch, and a topic watched again after an Unwatch set a new baseline
// without counting; a hole is seen only once a later message arrives.
//
// While its subscription is down a replica PINGs Redis every 100ms and
// resubscribes the moment it answers, logging one line when the
// subscription is lost and one, "fan-out subscription restored" with how
// long it was down, when it is back (both rate-limited), and setting
// wsgate_fanout_subscription_up. Fanout.Up tells whether the publisher
// reaches Redis, for the push API to answer 503 rather than 202.
//
// # Streams mode
//
// With FanoutOptions.Mode "streams", every replica XADDs what it relays to
// one stream, Prefix+"fanout-stream" (the envelope in a field, the topic in
// another), trimmed by age (MINID ~, StreamRetention) and length (MAXLEN ~,
// StreamMaxLen), and reads the whole stream with XREAD from its last id,
// starting at its own start time. A replica whose link was down reads on
// from there, so an outage shorter than the retention loses nothing; what
// was trimmed before it could read it is counted as lost, exactly. While
// Redis itself is down the publisher holds the batch Redis did not take
// and sends it again, first and in order, every 100ms until Redis takes
// it; newer messages wait in the bounded outbound queue (full: dropped,
// and counted as lost by the receivers). With Redis persisting the stream
// (appendonly, fsync always) a Redis restart loses nothing either. The
// cost: every replica reads every message, watched or not (it decodes the
// header only for the others), and Redis keeps the stream in memory.
//
// # Rolling upgrades
//
// Replicas of this release and of the previous one may share Redis while
// a deployment rolls. The channels (Prefix+"fanout:"+topic) are unchanged
// and this release still decodes the previous release's envelope (version
// 1, fanout_envelope.go), so broadcasts from the older replicas reach the
// newer ones; but this release sends version 2 (sequence numbers, user and
// role lists), which a previous-release replica drops, counted as
// decode_error in wsgate_fanout_dropped_total: until the roll is over, the
// older replicas do not hear the newer ones' broadcasts. The previous release had no control
// channel: it carried disconnects as a broadcast on the topic
// "\x00wsgate-control" of the fan-out. Control bridges to it
// (control_legacy.go): it sends each disconnect to the stream and, best
// effort, on the old channel, and listens on both, skipping the copies that replicas of this release send
// in the old form, so a disconnect reaches every replica, of either
// release, whichever one the application calls; each replica carries it
// out once. The Fanout refuses to relay or subscribe a topic holding a NUL
// byte, so no client of this release can broadcast on, or listen to, the
// old control topic.
package cluster
