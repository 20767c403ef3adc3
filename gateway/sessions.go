package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wsgate/wsgate/phpsession"
	"github.com/wsgate/wsgate/storage"
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
}

// Identity is the first authenticated firewall's token, or nil when the
// session is anonymous.
func (r *Resolution) Identity() *phpsession.FirewallResult {
	for i := range r.Firewalls {
		if r.Firewalls[i].Authenticated && r.Firewalls[i].Token != nil {
			return &r.Firewalls[i]
		}
	}
	return nil
}

// SessionResolver reads a PHP session from its store and decodes the
// Symfony security tokens in it. It is safe for concurrent use.
type SessionResolver struct {
	store   storage.SessionStore
	reader  *phpsession.Reader
	timeout time.Duration
}

// NewSessionResolver opens the configured session store and prepares the
// decoder. The caller owns the result and must Close it.
func NewSessionResolver(c SessionConfig) (*SessionResolver, error) {
	reader, err := phpsession.NewReader(phpsession.Options{
		Format:    phpsession.Format(c.SerializeHandler),
		Firewalls: c.Firewalls,
		Limits:    phpsession.DefaultLimits(),
	})
	if err != nil {
		return nil, fmt.Errorf("session decoder: %w", err)
	}
	store, err := openStore(c)
	if err != nil {
		return nil, err
	}
	return &SessionResolver{store: store, reader: reader, timeout: c.LookupTimeout}, nil
}

func openStore(c SessionConfig) (storage.SessionStore, error) {
	switch c.Store {
	case StoreFiles:
		s, err := storage.NewFilesStore(storage.FilesOptions{Dir: c.Files.Path, GCMaxLifetime: c.Files.GCMaxLifetime})
		if err != nil {
			return nil, fmt.Errorf("session store files: %w", err)
		}
		return s, nil
	case StorePDOMySQL:
		p := c.PDO
		s, err := storage.OpenMySQL(storage.PDOOptions{
			DSN: p.DSN, Table: p.Table, IDColumn: p.IDColumn, DataColumn: p.DataColumn,
			LifetimeColumn: p.LifetimeColumn, TimeColumn: p.TimeColumn,
			MaxOpenConns: p.MaxOpenConns, LookupTimeout: c.LookupTimeout,
		})
		if err != nil {
			return nil, fmt.Errorf("session store pdo_mysql: %w", err)
		}
		return s, nil
	}
	return nil, &ConfigError{Key: "session.store", Value: c.Store, Reason: "unknown store"}
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
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return Resolution{Status: StatusNotFound}, nil
	case errors.Is(err, storage.ErrExpired):
		return Resolution{Status: StatusExpired}, nil
	case errors.Is(err, storage.ErrInvalidID):
		return Resolution{Status: StatusInvalidID}, nil
	case errors.Is(err, storage.ErrTooLarge):
		// Over the decoder's input limit: it identifies nobody, and the
		// store is fine, so this is no reason for a 503.
		return Resolution{Status: StatusAnonymous, Reason: "session data too large"}, nil
	case err != nil:
		return Resolution{}, fmt.Errorf("read session: %w", err)
	}
	res, err := r.reader.Read(data)
	if err != nil {
		// An undecodable session identifies nobody; saying why lets an
		// operator running `session inspect` see it.
		return Resolution{Status: StatusAnonymous, Reason: err.Error()}, nil
	}
	out := Resolution{Status: StatusAnonymous, Firewalls: res.Firewalls}
	if out.Identity() != nil {
		out.Status = StatusAuthenticated
	}
	return out, nil
}

// Ping checks that the store answers.
func (r *SessionResolver) Ping(ctx context.Context) error { return r.store.Ping(ctx) }

// Close releases the store.
func (r *SessionResolver) Close() error { return r.store.Close() }
