package wamp

// Relay carries broadcasts between the nodes of several gateway replicas,
// so that an event published on one replica reaches the subscribers of
// every replica. The gateway implements it over Redis pub/sub; a node
// without a Relay serves its own clients only.
//
// The node calls Publish for every broadcast that originates on it
// (handler broadcasts, client publishes through handlers, pushes through
// the HTTP API), and Watch/Unwatch as topics gain their first and lose
// their last local subscriber. The other side calls Node.DeliverRelayed
// with what the other replicas published on watched topics.
type Relay interface {
	// Publish hands a broadcast made on this node to the other replicas:
	// payload is the JSON-encoded event (owned by the relay from now on),
	// a who gets it: every replica selects its own subscribers with it
	// (Node.DeliverRelayed), so users and roles reach clients wherever
	// they are connected; session ids are unique across replicas. The
	// relay may keep a's lists, which nobody modifies. It runs on socket
	// workers and must not block: an implementation queues and drops when
	// its bounded queue is full.
	Publish(topic string, payload []byte, a Audience)
	// Watch reports that topic got its first subscriber on this node.
	// It is called with the broker's lock held: it must not block nor
	// call back into the node.
	Watch(topic string)
	// Unwatch reports that topic lost its last subscriber on this node,
	// under the same constraints as Watch.
	Unwatch(topic string)
}

// DisclosingRelay is a Relay that also carries a disclosed publisher (see
// RouteConfig.Disclose) to the other replicas, which then put it in the
// EVENT details they deliver (Node.DeliverRelayedDetails). A Relay
// without it relays disclosed events undisclosed.
type DisclosingRelay interface {
	Relay
	// PublishDetails is Publish of an event whose v2 EVENT details
	// (details, a JSON object the relay owns from now on) name its
	// publisher.
	PublishDetails(topic string, payload []byte, a Audience, details []byte)
}
