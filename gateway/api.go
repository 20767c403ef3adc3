package gateway

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/wsgate/wsgate/gateway/cluster"
	"github.com/wsgate/wsgate/gateway/upstream"
	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/wamp"
)

// maxAPIBody bounds a push API request body.
const maxAPIBody = 1 << 20

// APIHandler is the push API the PHP app calls (docs/api.md), on its own listener
// (api.listen), every request authenticated with "Authorization: Bearer
// <api.token>":
//
//	POST /api/publish     {"topic": uri, "payload": any, "eligible_users": [..], "excluded_users": [..]}
//	POST /api/disconnect  {"username": name}
//	GET  /api/clients?username=name
//
// A publish without user lists goes to the topic handler's OnPush, as the
// bundle's pushers do; with them, the payload is broadcast as is to the
// subscribers of those users only (the handler is not involved, since it
// could not honour the lists). Answers are JSON; errors are
// {"error": "..."} with a fitting status.
func (s *Server) APIHandler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/publish", s.apiPublish)
	mux.HandleFunc("POST /api/disconnect", s.apiDisconnect)
	mux.HandleFunc("GET /api/clients", s.apiClients)
	mux.HandleFunc("GET /api/presence", s.apiPresence) // presence.go
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			s.metrics.PushRequests.WithLabelValues(apiSource(r.URL.Path), apiOutcome(sw.status)).Inc()
		}()
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			sw.Header().Set("WWW-Authenticate", `Bearer realm="wsgate"`)
			apiError(sw, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		mux.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status of an API answer for the metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// apiSource is the source label of an API request: the endpoint, from a
// fixed set so that a client cannot invent label values.
func apiSource(path string) string {
	switch path {
	case "/api/publish":
		return "publish"
	case "/api/disconnect":
		return "disconnect"
	case "/api/clients":
		return "clients"
	}
	return "other"
}

// apiOutcome is the outcome label of an answer's status.
func apiOutcome(status int) string {
	switch {
	case status == 0 || status/100 == 2:
		return "accepted"
	case status == http.StatusBadRequest, status == http.StatusRequestEntityTooLarge:
		return "bad_request"
	case status == http.StatusUnauthorized:
		return "unauthorized"
	case status == http.StatusNotFound, status == http.StatusMethodNotAllowed:
		return "not_found"
	case status == http.StatusConflict:
		return "conflict"
	case status == http.StatusServiceUnavailable:
		return "unavailable"
	}
	return "error"
}

func apiError(w http.ResponseWriter, status int, msg string) {
	apiJSON(w, status, map[string]string{"error": msg})
}

func apiJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// decodeAPI reads a bounded, strict JSON body into v.
func decodeAPI(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAPIBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			apiError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", maxAPIBody))
			return false
		}
		apiError(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		apiError(w, http.StatusBadRequest, "bad request body: trailing data")
		return false
	}
	return true
}

// publishRequest is an application push, from the HTTP API or the Redis
// push channel.
type publishRequest struct {
	Topic         string          `json:"topic"`
	Payload       json.RawMessage `json:"payload"`
	EligibleUsers []string        `json:"eligible_users"`
	ExcludedUsers []string        `json:"excluded_users"`
	// Retain keeps the push as the topic's retained event (WAMP v2 event
	// retention: a SUBSCRIBE with get_retained gets it), unless user
	// lists restrict it.
	Retain bool `json:"retain"`
}

// publish delivers an application push to this gateway's subscribers. It
// returns the HTTP status that fits the outcome and, on failure, why.
func (s *Server) publish(ctx context.Context, req publishRequest, source string) (int, error) {
	if req.Topic == "" || len(req.Payload) == 0 {
		return http.StatusBadRequest, errors.New("topic and payload are required")
	}
	s.metrics.Pushes.WithLabelValues(source).Inc()
	// Every replica receives the Redis push channel by itself and serves
	// its own clients; an HTTP push reaches one replica, which relays it.
	local := source == "redis"
	if !local && s.fanout != nil && !s.fanout.Up() {
		// The other replicas would not get it: refuse before delivering
		// anything, so that the app's retry does not deliver twice here.
		return http.StatusServiceUnavailable, errors.New("the fan-out to the other replicas cannot reach Redis; retry")
	}
	if req.EligibleUsers == nil && req.ExcludedUsers == nil {
		push := s.node.Push
		if local {
			push = s.node.PushLocal
		}
		if req.Retain {
			push = func(ctx context.Context, topic string, payload json.RawMessage, source string) error {
				return s.node.PushRetained(ctx, topic, payload, source, local)
			}
		}
		err := push(ctx, req.Topic, req.Payload, source)
		switch {
		case errors.Is(err, wamp.ErrNoRoute):
			return http.StatusNotFound, fmt.Errorf("no topic route for %s", req.Topic)
		case errors.Is(err, wamp.ErrNotPushable):
			return http.StatusConflict, errors.New("the topic's handler does not accept pushes")
		case err != nil:
			return http.StatusInternalServerError, fmt.Errorf("push failed: %w", err)
		}
		return http.StatusAccepted, nil
	}
	if req.EligibleUsers != nil && len(req.EligibleUsers) == 0 {
		// Named nobody: an empty eligible list would otherwise mean
		// everybody.
		return http.StatusAccepted, nil
	}
	// The user lists travel with the broadcast: every replica selects its
	// own subscribers of those users, wherever they are connected.
	a := wamp.Audience{EligibleUsers: req.EligibleUsers, ExcludeUsers: req.ExcludedUsers}
	if _, err := s.node.BroadcastTo(req.Topic, req.Payload, a, !local); err != nil {
		return http.StatusInternalServerError, fmt.Errorf("broadcast failed: %w", err)
	}
	return http.StatusAccepted, nil
}

func (s *Server) apiPublish(w http.ResponseWriter, r *http.Request) {
	var req publishRequest
	if !decodeAPI(w, r, &req) {
		return
	}
	if status, err := s.publish(r.Context(), req, "http"); err != nil {
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		apiError(w, status, err.Error())
		return
	}
	apiJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
}

// receivePushes is the Redis push channel's goroutine: every message is a
// publish request, as POST /api/publish takes it, delivered by each
// replica to its own subscribers. It is owned by the Server and ends at
// Shutdown.
func (s *Server) receivePushes() {
	defer s.wg.Done()
	ctx := s.bgCtx
	cluster.Subscribe(ctx, s.cfg.Push.Redis.Options(), s.cfg.Push.RedisChannel, func(msg []byte) {
		var req publishRequest
		dec := json.NewDecoder(bytes.NewReader(msg))
		dec.DisallowUnknownFields()
		if len(msg) > maxAPIBody || dec.Decode(&req) != nil {
			s.log.Warn("push channel: message is not a publish request", "bytes", len(msg))
			s.metrics.PushRequests.WithLabelValues("redis_channel", "bad_request").Inc()
			return
		}
		pctx, pcancel := context.WithTimeout(ctx, s.cfg.Limits.CallTimeout)
		defer pcancel()
		status, err := s.publish(pctx, req, "redis")
		s.metrics.PushRequests.WithLabelValues("redis_channel", apiOutcome(status)).Inc()
		if err != nil {
			s.log.Warn("push channel: publish failed", "topic", req.Topic, "err", err)
		}
	}, func(err error) {
		s.log.Warn("push channel: connection lost, reconnecting", "err", err)
	})
}

// apiDisconnect closes the user's connections here, then, with
// cluster.fanout, asks the other replicas to close theirs. The answer says
// what was done: 200 {"disconnected": n, "relayed": true} once Redis took
// the command (every replica alive carries it out), 503 with Retry-After
// and "relayed": false when it did not (the app retries: closing twice is
// harmless), never a 200 for a command that went nowhere. n counts this
// replica's connections only.
func (s *Server) apiDisconnect(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
	}
	if !decodeAPI(w, r, &req) {
		return
	}
	if req.Username == "" {
		apiError(w, http.StatusBadRequest, "username is required")
		return
	}
	n := s.closeUserConnections(req.Username, time.Now())
	if s.control == nil {
		apiJSON(w, http.StatusOK, map[string]any{"disconnected": n})
		return
	}
	err := s.control.Disconnect(r.Context(), req.Username)
	switch {
	case err == nil:
		apiJSON(w, http.StatusOK, map[string]any{"disconnected": n, "relayed": true})
	case errors.Is(err, cluster.ErrControlUnavailable):
		s.log.Warn("disconnect: not relayed to the other replicas", "err", err)
		w.Header().Set("Retry-After", "1")
		apiJSON(w, http.StatusServiceUnavailable, map[string]any{
			"error": "not relayed to the other replicas: " + err.Error(), "disconnected": n, "relayed": false,
		})
	default:
		// A user no command can carry (too long): retrying cannot help.
		apiJSON(w, http.StatusBadRequest, map[string]any{
			"error": err.Error(), "disconnected": n, "relayed": false,
		})
	}
}

// closeUserConnections closes with 4002 the user's connections on this
// replica established at or before before, and returns how many it
// closed: POST /api/disconnect here (before is now), or another replica's
// (before is when it was sent, so that a command read late spares the
// connections the user opened since).
func (s *Server) closeUserConnections(user string, before time.Time) int {
	n := 0
	for _, c := range s.snapshotClients() {
		if id := c.identity(); !id.Anonymous && id.UserIdentifier == user && !c.connectedAt().After(before) {
			c.conn.Close(closeAppDisconnect, "disconnected by the application", upstream.ReasonAppDisconnect)
			n++
		}
	}
	return n
}

func (s *Server) apiClients(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var (
		entries []storage.ClientEntry
		err     error
	)
	if user := r.URL.Query().Get("username"); user != "" {
		entries, err = s.clients.FindAllByUsername(ctx, user)
	} else {
		entries, err = s.clients.GetAll(ctx, strings.EqualFold(r.URL.Query().Get("anonymous"), "true"))
	}
	if err != nil {
		// Down, or known to miss entries (Redis lost its data and not every
		// replica re-registered yet): a partial list would tell the app
		// that online users are offline.
		w.Header().Set("Retry-After", "1")
		apiError(w, http.StatusServiceUnavailable, "client storage "+storage.Result(err)+": "+err.Error())
		return
	}
	type client struct {
		ConnID         string          `json:"conn_id"`
		WAMPSessionID  string          `json:"wamp_session_id"`
		UserIdentifier string          `json:"user_identifier"`
		Firewall       string          `json:"firewall,omitempty"`
		Roles          []string        `json:"roles"`
		Anonymous      bool            `json:"anonymous"`
		Node           string          `json:"node,omitempty"`
		ConnectedAt    time.Time       `json:"connected_at"`
		Extra          json.RawMessage `json:"extra,omitempty"`
	}
	out := make([]client, 0, len(entries))
	for _, e := range entries {
		roles := e.Roles
		if roles == nil {
			roles = []string{}
		}
		out = append(out, client{e.ConnID, e.WAMPSessionID, e.UserIdentifier, e.Firewall, roles, e.Anonymous, e.Node, e.ConnectedAt, e.Extra})
	}
	apiJSON(w, http.StatusOK, map[string]any{"clients": out})
}
