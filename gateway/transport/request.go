package transport

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

// Answers written to a socket refused before or without the host: small,
// so a fresh socket takes them at once and no write ever waits.
var (
	responseHeaderTooLarge  = []byte("HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	responseRequestTimeout  = []byte("HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	responseOverloaded      = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n")
	responseTooManyRequests = []byte("HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n")
)

var headerEnd = []byte("\r\n\r\n")

// A refused handshake's socket is closed lingering (see
// epConn.answerAndClose and lingerClose): its write side is shut after the
// answer and what the client still sends is discarded, for at most
// lingerTime and lingerBytes, so that the kernel does not reset the
// connection and destroy the answer before the client read it.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 4 << 20
)

// requestBuf collects one upgrade request as it arrives, never holding
// more than the cap: a client that sends more gets 431 with at most
// MaxHeaderBytes buffered, however it shapes its bytes.
type requestBuf struct {
	b []byte
}

// add appends data and reports whether the request is complete (its header
// section ended) or over max bytes without ending. Bytes after the end
// are dropped: a client must wait for the 101 before it sends frames
// (RFC 6455 §4.1).
func (r *requestBuf) add(data []byte, max int) (complete, tooLarge bool) {
	from := len(r.b) - 3
	if from < 0 {
		from = 0
	}
	take := min(len(data), max-len(r.b))
	r.b = append(r.b, data[:take]...)
	if i := bytes.Index(r.b[from:], headerEnd); i >= 0 {
		r.b = r.b[:from+i+len(headerEnd)]
		return true, false
	}
	return false, take < len(data) || len(r.b) >= max
}

// evictable is a socket still sending its request, which a newer one may
// push out of the pending list.
type evictable interface {
	// evict answers 503 (best effort, never waiting) and closes the
	// socket; whoever reads it sees the close and stops.
	evict()
}

// pendingEntry is a socket's place in the pending list; it is embedded in
// the mode's per-socket state, so listing costs no allocation.
type pendingEntry struct {
	prev, next *pendingEntry
	listed     bool
	owner      evictable
}

// pendingList holds the sockets whose upgrade request is not complete yet,
// oldest first, at most max of them. A new socket past max pushes out the
// oldest: a client that opens sockets and sends nothing holds a slot only
// until newer sockets need it, while a real browser completes its request
// within a round trip. So silent or slow sockets can never keep real
// clients out, and their number stays bounded.
type pendingList struct {
	mu         sync.Mutex // guards the list, n and closed
	head, tail *pendingEntry
	n, max     int
	closed     bool // not accepting: add refuses
}

// add lists e at the back. It returns the entry pushed out to make room
// (the caller evicts it and counts it) and false when the list is closed
// (the caller closes its socket).
func (l *pendingList) add(e *pendingEntry) (victim *pendingEntry, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, false
	}
	if l.n >= l.max && l.head != nil {
		victim = l.head
		l.unlink(victim)
	}
	e.prev, e.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
	e.listed = true
	l.n++
	return victim, true
}

// remove unlists e and reports whether it was listed: false means it was
// evicted (or closed by StopAccepting) meanwhile and its socket is closed.
func (l *pendingList) remove(e *pendingEntry) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !e.listed {
		return false
	}
	l.unlink(e)
	return true
}

func (l *pendingList) unlink(e *pendingEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next, e.listed = nil, nil, false
	l.n--
}

// closeAll refuses new entries and evicts every listed one.
func (l *pendingList) closeAll() {
	l.mu.Lock()
	l.closed = true
	var all []*pendingEntry
	for e := l.head; e != nil; e = l.head {
		l.unlink(e)
		all = append(all, e)
	}
	l.mu.Unlock()
	for _, e := range all {
		e.owner.evict()
	}
}

// len returns how many sockets are listed.
func (l *pendingList) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// listPending lists a new socket, evicting the oldest when the list is full.
// It returns false when the transport stopped accepting.
func (t *Transport) listPending(e *pendingEntry) bool {
	victim, ok := t.pending.add(e)
	if victim != nil {
		t.limit(LimitPendingRequests)
		t.handshakeEnded(OutcomeOverloaded)
		victim.owner.evict()
	}
	return ok
}

// upgrade answers one complete request; the host's Handshake decides. It
// runs on a handshake goroutine holding a slot of MaxHandshakes, with the
// deadline of the whole upgrade. It returns the answer to write and, when
// the client was admitted, the handshake to open and whether
// permessage-deflate was agreed; otherwise the outcome is already counted.
func (t *Transport) upgrade(req []byte, remote net.Addr, deadline time.Time) (resp []byte, hs Handshake, deflate bool) {
	if t.nopen.Load() >= int64(t.cfg.MaxConnections) {
		t.limit(LimitConnections)
		t.handshakeEnded(OutcomeOverloaded)
		return responseOverloaded, nil, false
	}
	hs = t.host.Handshake(remote)
	up := ws.Upgrader{
		Protocol: hs.Protocol,
		OnHost: func(host []byte) error {
			hs.Header(hostHeader, host)
			return nil
		},
		OnHeader: func(key, value []byte) error {
			hs.Header(key, value)
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			ctx, cancel := context.WithDeadline(t.baseCtx, deadline)
			defer cancel()
			return nil, hs.Admit(ctx)
		},
	}
	var ext *wsflate.Extension
	if t.cfg.PermessageDeflate {
		ext = &wsflate.Extension{Parameters: wsflate.Parameters{
			// Every message stands alone: no inflate window is kept per
			// connection between messages.
			ServerNoContextTakeover: true,
			ClientNoContextTakeover: true,
		}}
		up.Negotiate = ext.Negotiate
	}
	var out bytes.Buffer
	if _, err := up.Upgrade(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(req), &out}); err != nil {
		t.handshakeEnded(hs.Outcome())
		return out.Bytes(), nil, false
	}
	if ext != nil {
		_, deflate = ext.Accepted()
	}
	return out.Bytes(), hs, deflate
}

// hostHeader is the name Handshake.Header gets the Host header under.
var hostHeader = []byte("Host")
