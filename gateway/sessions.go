package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/phpsession"
	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/wamp/handler"
)

// Session statuses, the "status" of `wsgate session inspect` output and of
// Resolution. Later checks read them: keep them stable.
const (
	StatusAuthenticated = "authenticated"
	StatusAnonymous     = "anonymous"
	StatusExpired       = "expired"
	StatusNotFound      = "not_found"
	StatusInvalidID     = "invalid_id"
)

// Resolution is what the gateway recovers from one PHP session.
type Resolution struct {
	// Status is one of the Status* constants.
	Status string `json:"status"`
	// Firewalls has one entry per configured firewall when the session was
	// found and decoded.
	Firewalls []phpsession.FirewallResult `json:"firewalls,omitempty"`
	// Reason says why a found session is anonymous when no firewall says it
	// (e.g. the data could not be decoded).
	Reason string `json:"reason,omitempty"`
	// Format is the serialize handler that decoded the session (the one
	// detected with serialize_handler auto).
	Format phpsession.Format `json:"format,omitempty"`
	// Meta is Symfony's _sf2_meta: creation, last write, cookie lifetime.
	Meta *phpsession.Meta `json:"meta,omitempty"`
}

// Authenticated is the first authenticated firewall's result, or nil when
// the session is anonymous.
func (r *Resolution) Authenticated() *phpsession.FirewallResult {
	for i := range r.Firewalls {
		if r.Firewalls[i].Authenticated && r.Firewalls[i].Token != nil {
			return &r.Firewalls[i]
		}
	}
	return nil
}

// anonymous is the identity of a client without an authenticated user.
var anonymous = handler.Identity{Anonymous: true}

// Identity is who the session says the client is: the first authenticated
// firewall's token, or anonymous. It is made here, once, and carried as
// is by the connection, its WAMP session, the client storage and the
// connection events. Its strings are copies: the decoder's share one
// allocation with the whole Result, which a long-lived connection must not
// keep alive.
func (r *Resolution) Identity() handler.Identity {
	fw := r.Authenticated()
	if fw == nil {
		return anonymous
	}
	t := fw.Token
	roles := make([]string, len(t.Roles))
	for i, role := range t.Roles {
		roles[i] = interned.get(role)
	}
	return handler.Identity{
		UserIdentifier: strings.Clone(t.UserIdentifier),
		Roles:          roles,
		Firewall:       interned.get(fw.Firewall),
		TokenClass:     interned.get(t.Class),
		Impersonator:   strings.Clone(t.Impersonator),
	}
}

// interned holds one copy of the strings every identity repeats — role
// names, firewall names, token classes — so that a hundred thousand
// connections do not keep a hundred thousand copies of
// "ROLE_USER" and of a 70-byte token class.
var interned = internTable{strings: map[string]string{}}

// internTable is a bounded set of interned strings.
type internTable struct {
	mu      sync.Mutex // guards strings
	strings map[string]string
}

// maxInterned bounds the table: the names it is for come from the app's
// security configuration, a few dozen at most; past the bound (a session
// store full of invented role names) strings are copied, not kept.
const maxInterned = 4096

// get returns the table's copy of s, adding one while there is room.
func (t *internTable) get(s string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.strings[s]; ok {
		return v
	}
	v := strings.Clone(s)
	if len(t.strings) < maxInterned {
		t.strings[v] = v
	}
	return v
}

// SessionResolver reads a PHP session from its store and decodes the
// Symfony security tokens in it. It is safe for concurrent use.
type SessionResolver struct {
	store   storage.SessionStore
	reader  *phpsession.Reader
	timeout time.Duration
}

// NewSessionResolver opens the configured session store and prepares the
// decoder. obs (may be nil) is told about every store lookup. The caller
// owns the result and must Close it.
func NewSessionResolver(c config.SessionConfig, obs storage.Observer) (*SessionResolver, error) {
	reader, err := phpsession.NewReader(phpsession.Options{
		Format:                          phpsession.Format(c.SerializeHandler),
		Firewalls:                       c.Firewalls,
		Limits:                          phpsession.DefaultLimits(),
		UserIdentifierProperties:        c.UserIdentifierProperties,
		UserIdentifierPropertiesByClass: c.UserIdentifierPropertiesByClass,
	})
	if err != nil {
		return nil, fmt.Errorf("session decoder: %w", err)
	}
	store, err := openStore(c, obs)
	if err != nil {
		return nil, err
	}
	return &SessionResolver{store: store, reader: reader, timeout: c.LookupTimeout}, nil
}

func openStore(c config.SessionConfig, obs storage.Observer) (storage.SessionStore, error) {
	maxSize := int64(phpsession.DefaultLimits().MaxInput) // more could not be decoded anyway
	var (
		s   storage.SessionStore
		err error
	)
	switch c.Store {
	case config.StoreFiles:
		s, err = storage.NewFilesStore(storage.FilesOptions{
			Dir: c.Files.Path, GCMaxLifetime: c.Files.GCMaxLifetime, MaxSize: maxSize,
			MaxConcurrent: c.MaxConcurrent, Observer: obs,
		})
	case config.StorePDOMySQL, config.StorePDOPgSQL:
		p := c.PDO
		o := storage.PDOOptions{
			DSN: p.DSN, Table: p.Table, IDColumn: p.IDColumn, DataColumn: p.DataColumn,
			LifetimeColumn: p.LifetimeColumn, TimeColumn: p.TimeColumn,
			MaxOpenConns: p.MaxOpenConns, LookupTimeout: c.LookupTimeout, MaxSize: maxSize,
			MaxConcurrent: c.MaxConcurrent, Observer: obs,
		}
		if c.Store == config.StorePDOMySQL {
			s, err = storage.OpenMySQL(o)
		} else {
			s, err = storage.OpenPostgres(o)
		}
	case config.StoreRedis:
		r := c.Redis
		s, err = storage.OpenRedis(storage.RedisOptions{
			Addrs: r.Addrs, Mode: r.Mode, MasterName: r.MasterName, Username: r.Username, Password: r.Password, DB: r.DB,
			Prefix: r.Prefix, ClientCache: r.ClientCache, CacheTTL: r.CacheTTL,
			LookupTimeout: c.LookupTimeout, MaxSize: maxSize, MaxConcurrent: c.MaxConcurrent, Observer: obs,
		})
	case config.StoreMemcached:
		s, err = storage.OpenMemcached(storage.MemcachedOptions{
			Addrs: c.Memcached.Addrs, Prefix: c.Memcached.Prefix,
			LookupTimeout: c.LookupTimeout, MaxSize: maxSize, MaxConcurrent: c.MaxConcurrent, Observer: obs,
		})
	default:
		return nil, &config.Error{Key: "session.store", Value: c.Store, Reason: "unknown store"}
	}
	if err != nil {
		return nil, fmt.Errorf("session store %s: %w", c.Store, err)
	}
	return s, nil
}

// Resolve reads and decodes the session with this id. Only a store failure
// is an error (wrapping storage.ErrUnavailable when the store is down or
// slow); a missing, expired or undecodable session is a Resolution.
func (r *SessionResolver) Resolve(ctx context.Context, id string) (Resolution, error) {
	if !storage.ValidSessionID(id) {
		return Resolution{Status: StatusInvalidID}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	data, err := r.store.Read(ctx, id)
	if err != nil && !sessionOutcome(err) {
		return Resolution{}, fmt.Errorf("read session: %w", err)
	}
	return r.resolution(data, err), nil
}

// ResolveMany reads and decodes a batch of sessions with one store call
// (one MGET, one WHERE id IN (...)). A store failure fails the whole batch;
// per session, the Resolution says what was found, as Resolve would.
func (r *SessionResolver) ResolveMany(ctx context.Context, ids []string) (map[string]Resolution, error) {
	out := make(map[string]Resolution, len(ids))
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if storage.ValidSessionID(id) {
			valid = append(valid, id)
		} else {
			out[id] = Resolution{Status: StatusInvalidID}
		}
	}
	if len(valid) == 0 {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	found, err := r.store.ReadMany(ctx, valid)
	if err != nil {
		return nil, fmt.Errorf("read sessions: %w", err)
	}
	for _, id := range valid {
		rr, ok := found[id]
		if !ok {
			rr.Err = storage.ErrNotFound
		}
		out[id] = r.resolution(rr.Data, rr.Err)
	}
	return out, nil
}

// sessionOutcome reports whether a read error says something about the
// session (it does not exist, expired, cannot be a session id, is too
// large) rather than about the store.
func sessionOutcome(err error) bool {
	return errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrExpired) ||
		errors.Is(err, storage.ErrInvalidID) || errors.Is(err, storage.ErrTooLarge)
}

// resolution is the one decision Resolve and ResolveMany make of a
// session's read: its data, or the error the store gave for it.
func (r *SessionResolver) resolution(data []byte, err error) Resolution {
	switch {
	case err == nil:
		return r.decode(data)
	case errors.Is(err, storage.ErrNotFound):
		return Resolution{Status: StatusNotFound}
	case errors.Is(err, storage.ErrExpired):
		return Resolution{Status: StatusExpired}
	case errors.Is(err, storage.ErrInvalidID):
		return Resolution{Status: StatusInvalidID}
	case errors.Is(err, storage.ErrTooLarge):
		// Over the decoder's input limit: it identifies nobody, and the
		// store is fine, so this is no reason for a 503.
		return Resolution{Status: StatusAnonymous, Reason: "session data too large"}
	default:
		// A batch reports a session it could not read among others it
		// could; that one identifies nobody this time.
		return Resolution{Status: StatusAnonymous, Reason: err.Error()}
	}
}

func (r *SessionResolver) decode(data []byte) Resolution {
	res, err := r.reader.Read(data)
	if err != nil {
		// An undecodable session identifies nobody; saying why lets an
		// operator running `session inspect` see it.
		return Resolution{Status: StatusAnonymous, Reason: err.Error()}
	}
	out := Resolution{Status: StatusAnonymous, Firewalls: res.Firewalls, Format: res.Format, Meta: res.Meta}
	if out.Authenticated() != nil {
		out.Status = StatusAuthenticated
	}
	return out
}

// Ping checks that the store answers.
func (r *SessionResolver) Ping(ctx context.Context) error { return r.store.Ping(ctx) }

// Close releases the store.
func (r *SessionResolver) Close() error { return r.store.Close() }
