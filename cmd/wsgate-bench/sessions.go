package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// sessionTemplate is a real Symfony 5.4 session written by PHP (a copy of
// phpsession/testdata/upt_inmemory_roles.sess): an authenticated
// UsernamePasswordToken of firewall "main" for the InMemoryUser "alice",
// serialize_handler php, 1074 bytes.
//
//go:embed testdata/session.sess
var sessionTemplate []byte

// sessionID is the session id of client i. It is a valid PHP session id
// (letters and digits only).
func sessionID(i int) string { return "wsgbench" + strconv.Itoa(i) }

// userName is the user identifier written into client i's session.
func userName(i int) string { return "bench" + strconv.Itoa(i) }

// sessionFor returns the template session with its user identifier replaced
// by user. The token is a serialized string inside the session
// (s:<len>:"O:74:...";), so both the username's and the token's length
// prefixes are rewritten.
func sessionFor(tmpl []byte, user string) ([]byte, error) {
	const key = `s:14:"_security_main";s:`
	i := bytes.Index(tmpl, []byte(key))
	if i < 0 {
		return nil, errors.New("session template: no _security_main token")
	}
	lenStart := i + len(key)
	colon := bytes.IndexByte(tmpl[lenStart:], ':')
	if colon < 0 {
		return nil, errors.New("session template: bad token length")
	}
	n, err := strconv.Atoi(string(tmpl[lenStart : lenStart+colon]))
	if err != nil {
		return nil, fmt.Errorf("session template: token length: %w", err)
	}
	innerStart := lenStart + colon + 2 // past `:"`
	innerEnd := innerStart + n
	if innerEnd+2 > len(tmpl) || string(tmpl[innerEnd:innerEnd+2]) != `";` {
		return nil, errors.New("session template: token length does not match")
	}
	inner := tmpl[innerStart:innerEnd]
	const oldUser = "\x00username\";s:5:\"alice\";"
	if bytes.Count(inner, []byte(oldUser)) != 1 {
		return nil, errors.New("session template: username not found exactly once")
	}
	newInner := bytes.Replace(inner, []byte(oldUser),
		[]byte("\x00username\";s:"+strconv.Itoa(len(user))+":\""+user+"\";"), 1)

	var out bytes.Buffer
	out.Grow(len(tmpl) + len(user))
	out.Write(tmpl[:lenStart])
	out.WriteString(strconv.Itoa(len(newInner)))
	out.WriteString(`:"`)
	out.Write(newInner)
	out.Write(tmpl[innerEnd:])
	return out.Bytes(), nil
}

// seedSessions writes sess_<sessionID(i)> for i in [0, n) into dir, each
// for user bench<i>, with mode 0600 as PHP writes them. Existing files are
// overwritten (which also refreshes their mtime, so gc_maxlifetime does not
// expire them).
func seedSessions(dir string, n int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		data, err := sessionFor(sessionTemplate, userName(i))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "sess_"+sessionID(i)), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Defaults of the Redis seeding flags.
const (
	// defaultRedisPrefix is the key prefix of Symfony's RedisSessionHandler
	// ("sf_s"), which is also what wsgate's redis store reads by default
	// (storage.DefaultRedisPrefix, session.redis.prefix); not imported, so
	// the tool does not link every session store. A test checks they agree.
	defaultRedisPrefix = "sf_s"
	// defaultRedisTTL outlasts any run (--duration and --setup-timeout are
	// each at most an hour): a key expiring mid-run would, with
	// session.watch, close the connections of its session.
	defaultRedisTTL = 2 * time.Hour
	// redisSeedBatch is how many SETEX go in one pipelined round trip: a
	// batch holds about 1 MB of sessions, and 15,000 sessions take 15.
	redisSeedBatch = 1000
	// redisSeedTimeout bounds the whole seeding, as every phase is bounded.
	redisSeedTimeout = 30 * time.Second
)

// seedRedisSessions writes, on the Redis at addr (host:port), the key
// prefix+sessionID(i) for i in [0, n) holding the same bytes seedSessions
// writes to sess_<sessionID(i)>, each with a TTL of ttl, as Symfony's
// RedisSessionHandler writes a session (SETEX with the session lifetime).
// Existing keys are overwritten, which also renews their TTL. The commands
// are pipelined, redisSeedBatch per round trip.
func seedRedisSessions(ctx context.Context, addr, prefix string, n int, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, redisSeedTimeout)
	defer cancel()
	rdb, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:  []string{addr},
		DisableCache: true, // writes only: no client tracking needed
		Dialer:       net.Dialer{Timeout: 5 * time.Second},
	})
	if err != nil {
		return fmt.Errorf("connecting to redis %s: %w", addr, err)
	}
	defer rdb.Close()
	secs := int64(ttl / time.Second)
	if secs < 1 {
		return fmt.Errorf("redis TTL %s: less than a second", ttl)
	}
	cmds := make(rueidis.Commands, 0, min(n, redisSeedBatch))
	for start := 0; start < n; start += redisSeedBatch {
		cmds = cmds[:0]
		for i := start; i < min(n, start+redisSeedBatch); i++ {
			data, err := sessionFor(sessionTemplate, userName(i))
			if err != nil {
				return err
			}
			cmds = append(cmds, rdb.B().Setex().Key(prefix+sessionID(i)).Seconds(secs).Value(rueidis.BinaryString(data)).Build())
		}
		for j, r := range rdb.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				return fmt.Errorf("redis %s: SETEX of session %d: %w", addr, start+j, err)
			}
		}
	}
	return nil
}
