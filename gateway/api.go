package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/wamp"
)

// closeKicked is the close code of a client the application disconnected
// through the push API (POST /api/disconnect).
const closeKicked ws.StatusCode = 4002

// maxAPIBody bounds a push API request body.
const maxAPIBody = 1 << 20

// APIHandler is the push API the PHP app calls, on its own listener
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
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="wsgate"`)
			apiError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		mux.ServeHTTP(w, r)
	})
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
		apiError(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		apiError(w, http.StatusBadRequest, "bad request body: trailing data")
		return false
	}
	return true
}

func (s *Server) apiPublish(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Topic         string          `json:"topic"`
		Payload       json.RawMessage `json:"payload"`
		EligibleUsers []string        `json:"eligible_users"`
		ExcludedUsers []string        `json:"excluded_users"`
	}
	if !decodeAPI(w, r, &req) {
		return
	}
	if req.Topic == "" || len(req.Payload) == 0 {
		apiError(w, http.StatusBadRequest, "topic and payload are required")
		return
	}
	s.metrics.Pushes.WithLabelValues("http").Inc()
	if req.EligibleUsers == nil && req.ExcludedUsers == nil {
		err := s.node.Push(r.Context(), req.Topic, req.Payload, "http")
		switch {
		case errors.Is(err, wamp.ErrNoRoute):
			apiError(w, http.StatusNotFound, "no topic route for "+req.Topic)
		case errors.Is(err, wamp.ErrNotPushable):
			apiError(w, http.StatusConflict, "the topic's handler does not accept pushes")
		case err != nil:
			apiError(w, http.StatusInternalServerError, "push failed: "+err.Error())
		default:
			apiJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
		}
		return
	}
	sessions := func(users []string) []string {
		if users == nil {
			return nil
		}
		ids := []string{}
		for _, u := range users {
			for _, c := range s.node.Clients().FindAllByUsername(u) {
				ids = append(ids, c.SessionID())
			}
		}
		return ids
	}
	eligible, exclude := sessions(req.EligibleUsers), sessions(req.ExcludedUsers)
	if eligible != nil && len(eligible) == 0 {
		// Named users, none connected here: nobody to send to (an empty
		// eligible list would otherwise mean everybody).
		apiJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
		return
	}
	if err := s.node.Topic(req.Topic).Broadcast(req.Payload, exclude, eligible); err != nil {
		apiError(w, http.StatusInternalServerError, "broadcast failed: "+err.Error())
		return
	}
	apiJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
}

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
	n := 0
	for _, c := range s.snapshotConns() {
		c.mu.Lock()
		match := c.ident.user == req.Username
		c.mu.Unlock()
		if match {
			c.closeWith(closeKicked, "disconnected by the application", "app_disconnect")
			n++
		}
	}
	apiJSON(w, http.StatusOK, map[string]int{"disconnected": n})
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
		apiError(w, http.StatusServiceUnavailable, fmt.Sprintf("client storage: %v", err))
		return
	}
	type client struct {
		ConnID         string    `json:"conn_id"`
		WAMPSessionID  string    `json:"wamp_session_id"`
		UserIdentifier string    `json:"user_identifier"`
		Firewall       string    `json:"firewall,omitempty"`
		Roles          []string  `json:"roles"`
		Anonymous      bool      `json:"anonymous"`
		Node           string    `json:"node,omitempty"`
		ConnectedAt    time.Time `json:"connected_at"`
	}
	out := make([]client, 0, len(entries))
	for _, e := range entries {
		roles := e.Roles
		if roles == nil {
			roles = []string{}
		}
		out = append(out, client{e.ConnID, e.WAMPSessionID, e.UserIdentifier, e.Firewall, roles, e.Anonymous, e.Node, e.ConnectedAt})
	}
	apiJSON(w, http.StatusOK, map[string]any{"clients": out})
}
