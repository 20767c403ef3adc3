package gateway

import (
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/phpsession"
	"github.com/wsgate/wsgate/phpsession/securityyaml"
)

// securityYAMLKey is the configuration key errors about the app's
// security.yaml name.
const securityYAMLKey = "session.symfony_security_yaml"

// sessionReaderOptions is the decoder's configuration: the session
// section, completed from the app's security.yaml when
// session.symfony_security_yaml names one (read here, once). warnings are
// what that file holds that could not be used (%env()% values, imports,
// when@ sections); the caller logs them. An unusable file is a
// *config.Error naming the key.
func sessionReaderOptions(c config.SessionConfig) (opt phpsession.Options, warnings []string, err error) {
	opt = phpsession.Options{
		Format:                          phpsession.Format(c.SerializeHandler),
		Firewalls:                       c.Firewalls,
		Limits:                          phpsession.DefaultLimits(),
		UserIdentifierProperties:        c.UserIdentifierProperties,
		UserIdentifierPropertiesByClass: c.UserIdentifierPropertiesByClass,
	}
	path := c.SymfonySecurityYAML
	if path == "" {
		return opt, nil, nil
	}
	sec, err := securityyaml.Load(path)
	if err != nil {
		return opt, nil, &config.Error{Key: securityYAMLKey, Value: path, Reason: err.Error()}
	}
	if len(opt.Firewalls) == 0 {
		opt.Firewalls = sec.SessionFirewalls()
		if len(opt.Firewalls) == 0 {
			return opt, sec.Warnings, &config.Error{Key: securityYAMLKey, Value: path,
				Reason: "no firewall in it keeps a token in the session (all are security: false, stateless or unknown); set session.firewalls"}
		}
	}
	// The file's entity providers say which property is the identifier;
	// what the operator configured by class wins over them.
	byClass := sec.IdentifierProperties()
	maps.Copy(byClass, c.UserIdentifierPropertiesByClass)
	opt.UserIdentifierPropertiesByClass = byClass
	return opt, sec.Warnings, nil
}

// CheckSessionDecoder builds the session decoder's configuration as the
// gateway will at start, reading session.symfony_security_yaml when set,
// and returns what that file holds that will not be used. `config check`
// fails on its error (a *config.Error naming the key where one is to
// blame) and may print the warnings.
func CheckSessionDecoder(c config.SessionConfig) (warnings []string, err error) {
	opt, warnings, err := sessionReaderOptions(c)
	if err != nil {
		return warnings, err
	}
	if _, err := phpsession.NewReader(opt); err != nil {
		return warnings, err
	}
	return warnings, nil
}

// guessLogEvery is how often one user or token class's best-effort
// identity is logged; the metric counts every one.
const guessLogEvery = 10 * time.Minute

// maxGuessClasses bounds guessLog's table: classes come from the sessions
// the app writes, a handful, but the table must not grow with a store full
// of invented ones.
const maxGuessClasses = 256

// guessLog says, at most once per guessLogEvery for each class, that a
// client's identity was read by best effort.
type guessLog struct {
	mu   sync.Mutex // guards last
	last map[string]time.Time
}

// due reports whether class should be logged now.
func (g *guessLog) due(class string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.last[class]; ok && now.Sub(t) < guessLogEvery {
		return false
	}
	if g.last == nil {
		g.last = map[string]time.Time{}
	}
	if len(g.last) >= maxGuessClasses {
		for k, t := range g.last {
			if now.Sub(t) >= guessLogEvery {
				delete(g.last, k)
			}
		}
		if len(g.last) >= maxGuessClasses {
			return false
		}
	}
	g.last[class] = now
	return true
}

// noteBestEffort counts an admitted identity that is partly a guess
// (wsgate_identity_best_effort_total{firewall}) and logs why, naming the
// classes and properties but never their values.
func (s *Server) noteBestEffort(fw *phpsession.FirewallResult) {
	if fw == nil || fw.Token == nil || !fw.Token.BestEffort {
		return
	}
	t := fw.Token
	s.metrics.IdentityBestEffort.WithLabelValues(fw.Firewall).Inc()
	if len(t.IdentifierCandidates) > 0 {
		if !s.guesses.due(t.UserClass, time.Now()) {
			return
		}
		props := make([]string, len(t.IdentifierCandidates))
		for i, c := range t.IdentifierCandidates {
			props[i] = c.Property
		}
		s.log.Warn("user identifier is a guess: the user class has several identifier properties with different values; name the right one in session.user_identifier_properties_by_class or session.symfony_security_yaml",
			"firewall", fw.Firewall, "user_class", t.UserClass, "chosen", t.Chosen(), "candidates", props)
		return
	}
	if s.guesses.due(t.Class, time.Now()) {
		s.log.Warn("token class is not one Symfony ships: read by AbstractToken's layout",
			"firewall", fw.Firewall, "token_class", t.Class)
	}
}

// logSessionWarnings logs what the app's security.yaml holds that was not
// used.
func logSessionWarnings(log *slog.Logger, c config.SessionConfig, warnings []string) {
	for _, w := range warnings {
		log.Warn("security.yaml: not used", "path", c.SymfonySecurityYAML, "what", w)
	}
}
