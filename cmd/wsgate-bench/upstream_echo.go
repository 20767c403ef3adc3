package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/wsgate/wsgate/gateway/upstream"
)

// maxEchoBody caps a request body: the bench's calls are a few hundred bytes.
const maxEchoBody = 1 << 20

// runUpstreamEcho serves `wsgate-bench upstream-echo`: a minimal HTTP
// upstream in Go that answers the gateway's signed POSTs as
// examples/php-upstream does for the bench (sum calls, subscribes,
// publishes), so that an rpc run through it measures the gateway's
// upstream path (encode, sign, HTTP round trip, decode) with an
// application that costs next to nothing. It runs until ctx ends.
func runUpstreamEcho(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("wsgate-bench upstream-echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8001", "address to serve on (loopback only)")
	secretEnv := fs.String("secret-env", "WSGATE_UPSTREAM_SECRET", "environment variable holding the shared secret (the gateway's upstreams.<name>.secret)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	secret := os.Getenv(*secretEnv)
	if len(secret) < upstream.MinSecretBytes {
		log.Error("upstream-echo: secret missing or too short", "env", *secretEnv, "min_bytes", upstream.MinSecretBytes)
		return 2
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !loopbackHost(host) {
		log.Error("upstream-echo: --listen must be a loopback host:port", "listen", *listen)
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Error("upstream-echo: listen", "err", err)
		return 1
	}
	srv := &http.Server{Handler: newEchoUpstream([]byte(secret), log), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	log.Info("upstream-echo listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("upstream-echo: serve", "err", err)
		return 1
	}
	return 0
}

// echoRequest is the part of the gateway's request body the echo reads.
type echoRequest struct {
	Kind   string            `json:"kind"`
	Method string            `json:"method"`
	Args   []json.RawMessage `json:"args"`
	Caller struct {
		Anonymous bool `json:"anonymous"`
	} `json:"caller"`
}

// newEchoUpstream returns the echo's handler: it verifies the signature
// and timestamp as an application must (401 otherwise), then answers
//
//	call "sum":       {"result": <sum of the numeric args>}
//	call, anonymous:  {"error": {"uri": "app.error.auth", "code": 403, ...}}
//	call, other:      {"error": {"uri": "app.error.not_found", "code": 404, ...}}
//	subscribe:        {"allow": true}
//	publish, unsubscribe: {}
func newEchoUpstream(secret []byte, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxEchoBody+1))
		if err != nil || len(body) > maxEchoBody {
			http.Error(w, "unreadable or too large body", http.StatusBadRequest)
			return
		}
		// No replay store: the echo only measures the gateway (a real app
		// must refuse a request id it has already accepted).
		if _, err := upstream.VerifyRequest(secret, r, body, time.Now(), 0); err != nil {
			log.Warn("upstream-echo: refused request", "err", err)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		var req echoRequest
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "malformed request", http.StatusBadRequest)
			return
		}
		var reply any
		switch req.Kind {
		case "call":
			switch {
			case req.Method != "sum":
				reply = echoError("app.error.not_found", fmt.Sprintf("Unknown method %q", req.Method), 404)
			case req.Caller.Anonymous:
				reply = echoError("app.error.auth", "You must be authenticated to use this function.", 403)
			default:
				reply = map[string]float64{"result": sumArgs(req.Args)}
			}
		case "subscribe":
			reply = map[string]bool{"allow": true}
		case "publish", "unsubscribe":
			reply = struct{}{}
		default:
			http.Error(w, "unknown kind", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(reply)
	})
}

func echoError(uri, desc string, code int) map[string]any {
	return map[string]any{"error": map[string]any{"uri": uri, "desc": desc, "code": code}}
}

// sumArgs adds up the numeric arguments; one array argument is summed
// element by element (the WAMP v1 [1,2] of the bench arrives as args
// [1,2], a v2 client may wrap it once more).
func sumArgs(args []json.RawMessage) float64 {
	if len(args) == 1 && len(args[0]) > 0 && args[0][0] == '[' {
		var inner []json.RawMessage
		if json.Unmarshal(args[0], &inner) == nil {
			args = inner
		}
	}
	var sum float64
	for _, a := range args {
		var f float64
		if json.Unmarshal(a, &f) == nil {
			sum += f
		}
	}
	return sum
}
