package upstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"

	"github.com/wsgate/wsgate/wamp/handler"
)

// Progressive call results from the application: a streamed call reply.
//
// When the caller asked for progressive results (WAMP v2 CALL option
// receive_progress), a call request says it accepts them:
//
//	Accept: application/json, application/x-ndjson
//
// The application may then answer Content-Type application/x-ndjson: one
// JSON object a line, each {"progress": <any JSON>} until the last, which
// is the usual call reply ({"result": ...} or {"error": {...}}). Each
// progress goes to the caller (RESULT with details {"progress": true}) as
// soon as its line is read; the final line ends the call. Blank lines are
// skipped (a keep-alive); nothing but blank lines may follow the final
// one. A plain application/json reply is taken as before, so an
// application streams only where it wants to. A stream reaching a caller
// that did not ask (or a WAMP v1 caller) is read the same way and its
// progress lines are dropped.
//
// Bounds: each line is at most the upstream's max_reply_bytes, a stream at
// most MaxProgressLines progress lines, the whole stream within the
// upstream's timeout (and the gateway's call_timeout); past any of them
// the call fails with 502 (504 for the time) and the request is aborted.
// Each progress is queued on the client's connection like any message, so
// a client that does not read is closed as a slow consumer, which cancels
// the call and aborts the request.

// contentTypeNDJSON is the media type of a streamed call reply.
const contentTypeNDJSON = "application/x-ndjson"

// MaxProgressLines bounds the progress lines of one streamed call reply.
const MaxProgressLines = 10000

// errStream is wrapped by the errors of a malformed stream.
var errStream = errors.New("invalid streamed reply")

// readStream reads a streamed call reply (see above) from body: each
// progress value goes to progress, in order, and the final line's reply
// is returned. maxLine bounds a line, maxProgress the progress lines. An
// error from progress stops the reading and is returned as is.
func readStream(body io.Reader, maxLine int64, maxProgress int, progress func(json.RawMessage) error) (*reply, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, min(maxLine+1, 4<<10)), int(maxLine)+1)
	var final *reply
	lines := 0
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if int64(len(line)) > maxLine {
			return nil, fmt.Errorf("%w: a line is larger than %d bytes", errReplyTooLarge, maxLine)
		}
		if final != nil {
			return nil, fmt.Errorf("%w: a line after the final reply", errStream)
		}
		p, r, err := parseStreamLine(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", errStream, lines+1, err)
		}
		lines++
		if r != nil {
			final = r
			continue
		}
		if lines > maxProgress {
			return nil, fmt.Errorf("%w: more than %d progress lines", errStream, maxProgress)
		}
		if err := progress(p); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: a line is larger than %d bytes", errReplyTooLarge, maxLine)
		}
		return nil, err
	}
	if final == nil {
		return nil, fmt.Errorf("%w: no final reply", errStream)
	}
	return final, nil
}

// parseStreamLine reads one line of a stream: a progress ({"progress": v},
// nothing else), or the final call reply (see parseReply).
func parseStreamLine(line []byte) (progress json.RawMessage, final *reply, err error) {
	if line[0] != '{' {
		return nil, nil, errors.New("not a JSON object")
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(line, &keys); err != nil {
		return nil, nil, fmt.Errorf("not valid JSON: %v", err)
	}
	if p, ok := keys["progress"]; ok {
		if len(keys) != 1 {
			return nil, nil, errors.New(`a progress line has only "progress"`)
		}
		return p, nil, nil
	}
	r, err := parseReply(KindCall, line)
	if err != nil {
		return nil, nil, err
	}
	return nil, r, nil
}

// streamReply reads the streamed reply of a call made with ctx (see
// readStream), sending its progress lines to the call's caller, and maps
// its failures as send maps a plain reply's.
func (u *Upstream) streamReply(parent, ctx context.Context, body io.Reader) (*reply, error) {
	r, err := readStream(body, u.max, MaxProgressLines, func(p json.RawMessage) error {
		if err := handler.Progress(parent, p); err != nil && !errors.Is(err, handler.ErrCallEnded) {
			return err
		}
		// Once the call has ended for the caller the stream is still
		// read to its end: a CANCEL in mode skip leaves the application
		// alone, the other modes cancel ctx and so the request.
		return nil
	})
	switch {
	case err == nil:
	case errors.Is(err, errReplyTooLarge):
		return nil, gatewayError(502, URIBadGateway, fmt.Sprintf("upstream reply line larger than %d bytes", u.max))
	case errors.Is(err, errStream):
		if e := u.ctxError(parent, ctx, nil); e != nil {
			return nil, e
		}
		msg := err.Error()
		if len(msg) > 200 { // field names come from the reply
			msg = msg[:200] + "…"
		}
		return nil, gatewayError(502, URIBadGateway, msg)
	default:
		if e := u.ctxError(parent, ctx, nil); e != nil {
			return nil, e
		}
		return nil, gatewayError(502, URIBadGateway, "upstream reply cut short")
	}
	if r.Error != nil {
		return nil, r.Error.handlerError()
	}
	return r, nil
}

// isNDJSON reports whether a Content-Type is application/x-ndjson.
func isNDJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == contentTypeNDJSON
}
