// Package storage reads the sessions a legacy PHP application writes, straight
// from the store it writes them to, and keeps the registry of websocket
// clients.
//
// The package knows stores, not formats: a SessionStore hands back the raw
// serialized session bytes exactly as PHP stored them, and decoding them is
// someone else's job. Every SessionStore is strictly read-only towards the PHP
// application's data: it never writes, never takes a lock (no flock, no
// GET_LOCK, no SELECT ... FOR UPDATE), and so can never make a PHP request
// wait for the gateway.
//
// Each interface has a file named for it: session_store.go (SessionStore,
// BatchReader, ValidSessionID) and client_storage.go (ClientStorage,
// ClientEntry). Their implementations sit in files named for the backend:
// files.go, pdo.go (MySQL), postgres.go, redis.go (whose RedisOptions is
// also the connection config of everything else that talks to Redis) and
// client_storage_memory.go, client_storage_redis.go; sql_store.go holds
// what the MySQL and PostgreSQL stores share (the selects, each lookup's
// steps around the driver call). errors.go holds the
// sentinel errors and Result, their metric label; observer.go what the
// stores report; limiter.go the concurrency limit every store applies.
// Messages between replicas are not stored: they live in gateway/cluster.
package storage
