package gateway

import (
	"context"
	"encoding/binary"
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

// Why a client is anonymous: Resolution.AnonymousReason, the reason label
// of wsgate_anonymous_handshakes_total, and the headings of
// docs/troubleshooting.md. Dashboards and alerts read them: keep them
// stable.
const (
	// AnonNoCookie: the handshake carried no session cookie PHP would read.
	AnonNoCookie = "no_cookie"
	// AnonInvalidID: the cookie's value cannot be a session id (PHP would
	// start a new session).
	AnonInvalidID = "invalid_id"
	// AnonNotFound: the store has no session under the id.
	AnonNotFound = "not_found"
	// AnonExpired: the session is older than the store's lifetime.
	AnonExpired = "expired"
	// AnonUndecodable: the session, or its token, did not decode (wrong
	// serialize handler, too large, a layout the decoder does not know).
	AnonUndecodable = "undecodable"
	// AnonNoTokenForFirewall: the session holds no _security_<firewall>
	// for any configured firewall.
	AnonNoTokenForFirewall = "no_token_for_firewall"
	// AnonNotAuthenticated: there is a token, but not a logged-in one
	// (AnonymousToken, NullToken, not authenticated, no user).
	AnonNotAuthenticated = "not_authenticated"
	// AnonStoreUnavailable: the store failed and session.on_unavailable
	// admits such clients as anonymous.
	AnonStoreUnavailable = "store_unavailable"
)

// AnonymousReasons lists every AnonymousReason value.
func AnonymousReasons() []string {
	return []string{AnonNoCookie, AnonInvalidID, AnonNotFound, AnonExpired, AnonUndecodable,
		AnonNoTokenForFirewall, AnonNotAuthenticated, AnonStoreUnavailable}
}

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
	// AnonymousReason is one of the Anon* constants, "" when
	// authenticated.
	AnonymousReason string `json:"anonymous_reason,omitempty"`
	// SecurityKeys are the _security_* tokens the session holds, listed
	// only on request (SessionResolver.Inspect, SecurityKeys): it costs a
	// second, full decode.
	SecurityKeys []phpsession.SecurityToken `json:"security_keys,omitempty"`

	// data is the record, kept while the reason is
	// no_token_for_firewall so that SecurityKeys can say which tokens the
	// session holds instead.
	data []byte
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
	return handler.Identity{
		UserIdentifier: strings.Clone(t.UserIdentifier),
		Roles:          interned.roles(t.Roles),
		Firewall:       interned.get(fw.Firewall),
		TokenClass:     interned.get(t.Class),
		Impersonator:   strings.Clone(t.Impersonator),
	}
}

// interned holds one copy of the strings every identity repeats — role
// names, firewall names, token classes — so that a hundred thousand
// connections do not keep a hundred thousand copies of
// "ROLE_USER" and of a 70-byte token class; and one copy of each list of
// roles, which most users share (handler.Identity's Roles is read-only
// wherever it goes, and a list per connection was 48 B of each idle one,
// issue 19).
var interned = internTable{strings: map[string]string{}, roleSets: map[string][]string{}}

// internTable is a bounded set of interned strings and role lists.
type internTable struct {
	mu       sync.Mutex // guards strings and roleSets
	strings  map[string]string
	roleSets map[string][]string // by the names, each length-prefixed
}

// maxInterned bounds the table: the names it is for come from the app's
// security configuration, a few dozen at most; past the bound (a session
// store full of invented role names) strings are copied, not kept.
const maxInterned = 4096

// get returns the table's copy of s, adding one while there is room.
func (t *internTable) get(s string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.getLocked(s)
}

// roles returns the table's list of the role names names (never nil; its
// length is its capacity, so an append copies), adding one while there is
// room. The list is shared: it must not be modified.
func (t *internTable) roles(names []string) []string {
	var buf [256]byte
	key := buf[:0]
	for _, n := range names { // length-prefixed: no two lists share a key
		key = binary.AppendUvarint(key, uint64(len(n)))
		key = append(key, n...)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.roleSets[string(key)]; ok { // no allocation for the lookup
		return v
	}
	v := make([]string, len(names))
	for i, n := range names {
		v[i] = t.getLocked(n)
	}
	if len(t.roleSets) < maxInterned {
		t.roleSets[string(key)] = v
	}
	return v
}

// getLocked is get with t.mu held.
func (t *internTable) getLocked(s string) string {
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
	store     storage.SessionStore
	reader    *phpsession.Reader
	timeout   time.Duration
	warnings  []string
	firewalls []string               // the firewall (context) names read, in order
	notifier  storage.ChangeNotifier // nil unless watching
}

// NewSessionResolver opens the configured session store and prepares the
// decoder (reading session.symfony_security_yaml, when set: see
// Warnings). obs (may be nil) is told about every store lookup. The caller
// owns the result and must Close it. It never watches the store
// (session.watch is the Server's business).
func NewSessionResolver(c config.SessionConfig, obs storage.Observer) (*SessionResolver, error) {
	return newSessionResolver(c, obs, nil)
}

// newSessionResolver is NewSessionResolver that, when watchErr is not nil
// and session.watch is on, has the store watch sessions (if it can) and
// tells watchErr why watching failed.
func newSessionResolver(c config.SessionConfig, obs storage.Observer, watchErr func(error)) (*SessionResolver, error) {
	opt, warnings, err := sessionReaderOptions(c) // identity.go
	if err != nil {
		return nil, err
	}
	reader, err := phpsession.NewReader(opt)
	if err != nil {
		return nil, fmt.Errorf("session decoder: %w", err)
	}
	if !c.Watch {
		watchErr = nil
	}
	store, err := openStore(c, obs, watchErr)
	if err != nil {
		return nil, err
	}
	r := &SessionResolver{store: store, reader: reader, timeout: c.LookupTimeout, warnings: warnings, firewalls: opt.Firewalls}
	if n, ok := store.(storage.ChangeNotifier); ok && watchErr != nil {
		r.notifier = n
	}
	return r, nil
}

// Firewalls are the firewall (context) names whose _security_<name> token
// is read, in order: session.firewalls, or those of the app's
// security.yaml.
func (r *SessionResolver) Firewalls() []string { return r.firewalls }

// Warnings are what the app's security.yaml (session.symfony_security_yaml)
// holds that the decoder could not use: %env()% values, imports, when@
// sections. The caller logs them.
func (r *SessionResolver) Warnings() []string { return r.warnings }

// Notifier is the store's ChangeNotifier when the resolver watches
// sessions, else nil.
func (r *SessionResolver) Notifier() storage.ChangeNotifier { return r.notifier }

// openStore opens c's store; watchErr not nil has it watch sessions where
// it can, reporting failures there.
func openStore(c config.SessionConfig, obs storage.Observer, watchErr func(error)) (storage.SessionStore, error) {
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
			Watch: watchErr != nil, OnWatchError: watchErr,
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
		o := r.RedisConnConfig.Options()
		o.Prefix, o.ClientCache, o.CacheTTL = r.Prefix, r.ClientCache, r.CacheTTL
		o.LookupTimeout, o.MaxSize, o.MaxConcurrent, o.Observer = c.LookupTimeout, maxSize, c.MaxConcurrent, obs
		o.Watch, o.OnWatchError = watchErr != nil, watchErr
		s, err = storage.OpenRedis(o)
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
	res, _, err := r.read(ctx, id)
	return res, err
}

// Inspect is Resolve that also lists the _security_* tokens the session
// holds (Resolution.SecurityKeys), for `wsgate session inspect`.
func (r *SessionResolver) Inspect(ctx context.Context, id string) (Resolution, error) {
	res, data, err := r.read(ctx, id)
	if err == nil && data != nil {
		res.SecurityKeys, _ = r.reader.SecurityKeys(data) // undecodable: the Reason says so already
	}
	return res, err
}

// SecurityKeys fills res.SecurityKeys when res is anonymous for want of a
// token for the configured firewalls: which ones the session holds
// instead. It decodes the session again, in full: call it for a log line
// that is about to be written, not for every handshake.
func (r *SessionResolver) SecurityKeys(res *Resolution) {
	if res.data == nil || res.SecurityKeys != nil {
		return
	}
	res.SecurityKeys, _ = r.reader.SecurityKeys(res.data)
	res.data = nil
}

// read is Resolve, also returning the record (nil when there is none).
func (r *SessionResolver) read(ctx context.Context, id string) (Resolution, []byte, error) {
	if !storage.ValidSessionID(id) {
		return Resolution{Status: StatusInvalidID, AnonymousReason: AnonInvalidID}, nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	data, err := r.store.Read(ctx, id)
	if err != nil && !sessionOutcome(err) {
		return Resolution{}, nil, fmt.Errorf("read session: %w", err)
	}
	return r.resolution(data, err), data, nil
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
			out[id] = Resolution{Status: StatusInvalidID, AnonymousReason: AnonInvalidID}
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
		res := r.resolution(rr.Data, rr.Err)
		res.data = nil // revalidation does not list tokens
		out[id] = res
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
		return Resolution{Status: StatusNotFound, AnonymousReason: AnonNotFound}
	case errors.Is(err, storage.ErrExpired):
		return Resolution{Status: StatusExpired, AnonymousReason: AnonExpired}
	case errors.Is(err, storage.ErrInvalidID):
		return Resolution{Status: StatusInvalidID, AnonymousReason: AnonInvalidID}
	case errors.Is(err, storage.ErrTooLarge):
		// Over the decoder's input limit: it identifies nobody, and the
		// store is fine, so this is no reason for a 503.
		return Resolution{Status: StatusAnonymous, Reason: "session data too large", AnonymousReason: AnonUndecodable}
	default:
		// A batch reports a session it could not read among others it
		// could; that one identifies nobody this time.
		return Resolution{Status: StatusAnonymous, Reason: err.Error(), AnonymousReason: AnonUndecodable}
	}
}

func (r *SessionResolver) decode(data []byte) Resolution {
	res, err := r.reader.Read(data)
	if err != nil {
		// An undecodable session identifies nobody; saying why lets an
		// operator running `session inspect` see it.
		return Resolution{Status: StatusAnonymous, Reason: err.Error(), AnonymousReason: AnonUndecodable}
	}
	out := Resolution{Status: StatusAnonymous, Firewalls: res.Firewalls, Format: res.Format, Meta: res.Meta}
	if out.Authenticated() != nil {
		out.Status = StatusAuthenticated
		return out
	}
	out.AnonymousReason = anonymousReason(res.Firewalls)
	if out.AnonymousReason == AnonNoTokenForFirewall {
		out.data = data
	}
	return out
}

// anonymousReason says why no firewall is authenticated: none has a token
// at all; one has a token that did not decode; or the tokens are not
// logged-in ones.
func anonymousReason(fws []phpsession.FirewallResult) string {
	noToken, broken := true, false
	for i := range fws {
		noToken = noToken && fws[i].NoToken()
		broken = broken || fws[i].Err != nil
	}
	switch {
	case noToken:
		return AnonNoTokenForFirewall
	case broken:
		return AnonUndecodable
	default:
		return AnonNotAuthenticated
	}
}

// Ping checks that the store answers.
func (r *SessionResolver) Ping(ctx context.Context) error { return r.store.Ping(ctx) }

// Close releases the store.
func (r *SessionResolver) Close() error { return r.store.Close() }
