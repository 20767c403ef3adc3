package gateway

import (
	"context"
	"errors"
	"testing"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/test/testenv"
)

// TestOpenStoreMemcached: session.store memcached opens a MemcachedStore
// with the section's address and prefix, without needing memcached up.
func TestOpenStoreMemcached(t *testing.T) {
	c := config.Default().Session
	c.Store = config.StoreMemcached
	c.Memcached.Addrs = []string{testenv.Blackhole(t)}
	s, err := openStore(c, nil, nil)
	if err != nil {
		t.Fatalf("openStore: %v", err)
	}
	defer s.Close()
	if _, ok := s.(*storage.MemcachedStore); !ok {
		t.Fatalf("openStore = %T, want *storage.MemcachedStore", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.LookupTimeout/10)
	defer cancel()
	if _, err := s.Read(ctx, "abc"); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Read from a server that never answers = %v; want ErrUnavailable", err)
	}
}
