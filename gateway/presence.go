package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/wsgate/wsgate/gateway/cluster"
	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/wamp"
)

// hasPresence reports whether any topic route has presence: only then
// does the gateway share presence through Redis.
func hasPresence(routes wamp.RoutesConfig) bool {
	for _, r := range routes.Topics {
		if r.Presence {
			return true
		}
	}
	return false
}

// newPresence connects the cluster-wide presence list (with the Redis
// client storage and a presence route; nil otherwise): snapshots in the
// client storage's Redis, under its prefix, lasting its TTL.
func newPresence(cfg config.Config, nodeID string, s *Server) (*cluster.Presence, error) {
	if cfg.ClientStorage.Driver != "redis" || !hasPresence(cfg.Routes) {
		return nil, nil
	}
	return cluster.NewPresence(cfg.ClientStorage.Redis.Options(), cfg.ClientStorage.Prefix, nodeID,
		cfg.ClientStorage.TTL, wamp.PresenceListMax, s.log)
}

// presenceDirectory is cluster.Presence as the node's
// wamp.PresenceDirectory.
type presenceDirectory struct{ *cluster.Presence }

// EmitsEvents: users' joins and leaves come from the cluster-wide
// presence (cluster.Presence's writer), once per change.
func (presenceDirectory) EmitsEvents() bool { return true }

// List lists topic's presence on every replica.
func (d presenceDirectory) List(ctx context.Context, topic string, max int) (wamp.PresenceList, error) {
	l, err := d.Presence.List(ctx, topic, max)
	if err != nil {
		return wamp.PresenceList{}, err
	}
	return wamp.PresenceList{Topic: topic, Users: l.Users, Anonymous: l.Anonymous, Truncated: l.Truncated}, nil
}

// presenceSource is the node's local presence for cluster.Presence.
func presenceSource(n *wamp.Node) cluster.PresenceSource {
	return cluster.PresenceSource{
		Local: func(topic string, max int) cluster.PresenceSnapshot {
			l := n.LocalPresence(topic, max)
			return cluster.PresenceSnapshot{Users: l.Users, Anonymous: l.Anonymous, Truncated: l.Truncated}
		},
		Topics:  n.PresenceTopics,
		Watched: n.PresenceWatched,
		Emit: func(topic string, joins, leaves []string, anonymousLeft int) {
			for _, u := range joins {
				n.PresenceEvent(topic, true, u)
			}
			for _, u := range leaves {
				n.PresenceEvent(topic, false, u)
			}
			for range anonymousLeft {
				n.PresenceEvent(topic, false, "")
			}
		},
	}
}

// apiPresence answers GET /api/presence?topic=T: who is subscribed to the
// presence topic T, on every replica with the Redis client storage (else
// on this one): 200 {"topic","users","anonymous","truncated"}, 400
// without a topic, 404 when T's route has no presence, 503 when Redis
// cannot be read.
func (s *Server) apiPresence(w http.ResponseWriter, r *http.Request) {
	topic := r.URL.Query().Get("topic")
	if topic == "" {
		apiError(w, http.StatusBadRequest, "topic is required")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	l, err := s.node.ListPresence(ctx, topic)
	switch {
	case errors.Is(err, wamp.ErrNoPresence):
		apiError(w, http.StatusNotFound, "no presence for this topic")
	case err != nil:
		w.Header().Set("Retry-After", "1")
		apiError(w, http.StatusServiceUnavailable, "presence: "+err.Error())
	default:
		apiJSON(w, http.StatusOK, l)
	}
}
