// Package config is the gateway's configuration: the Config struct with
// one type per section (listen, origins, session, client_storage,
// transport, limits, keepalive, metrics, api, push, cluster, events, log,
// wamp, routes, plugins, upstreams), Default and the embedded DefaultYAML
// (the sample shipped to operators), and the loader.
//
// Load and Parse read YAML strictly (unknown keys, wrong kinds, duplicates
// and anchors are errors), then overlay the WSGATE_* environment variables
// (EnvName gives each key's; Keys lists them all), then Validate. Every
// error that a key is to blame for is an *Error naming the key, the bad
// value (never a secret) and where it came from (file line or variable),
// so an operator can fix it without reading code.
//
// Config.Validate runs one Validate method per section; the bound helpers
// (Between, Positive, NotNegative, OrDefault, OneOf) are the single rule
// for counts, sizes, durations and enumerations, also used by
// gateway/upstream for the settings it takes directly.
//
// OriginPolicy is the compiled `origins:` section: the pattern syntax that
// Validate checks and the match the handshake applies live together here.
//
// The package knows nothing of sockets, sessions or WAMP messages; it
// imports gateway/transport only for the mode names and whether epoll
// exists, and wamp for the routes' type and the protocol limits' defaults.
package config
