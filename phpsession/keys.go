package phpsession

import (
	"strings"
)

// SecurityToken is one _security_<context> attribute a session holds: the
// token Symfony's ContextListener stored for a firewall context. It answers
// "which firewall did the app log the user into?" when the configured one
// has no token.
type SecurityToken struct {
	// Key is the attribute name, e.g. "_security_main".
	Key string `json:"key"`
	// Class is the token's class ("" when the attribute is not a token).
	Class string `json:"token_class,omitempty"`
	// Firewall is the firewall name the token carries itself
	// (AbstractToken subclasses' $firewallName, the guard token's
	// $providerKey); "" when its layout has none (AnonymousToken,
	// Serializable tokens of Symfony <= 4.1) or it did not decode.
	Firewall string `json:"token_firewall,omitempty"`
}

// SecurityKeys lists the _security_* attributes of a session record, in
// stored order, with each token's class and own firewall name. It decodes
// the whole record and every token: a diagnostic for `session inspect` and
// for the gateway's rate-limited "anonymous" log line, not for every
// handshake. Tokens that do not decode are listed without class.
func (r *Reader) SecurityKeys(data []byte) ([]SecurityToken, error) {
	vars, _, err := DecodeSessionAuto(data, r.format, r.lim)
	if err != nil {
		return nil, err
	}
	var attrs *Value
	for _, e := range vars.Entries() { // the last one wins, as in PHP
		if !e.Key.IsInt() && e.Key.String() == AttributesKey {
			attrs = e.Value.Deref()
		}
	}
	if attrs == nil || attrs.Kind() != Array {
		return nil, nil
	}
	var out []SecurityToken
	for _, e := range attrs.Entries() {
		if e.Key.IsInt() || !strings.HasPrefix(e.Key.String(), SecurityKeyPrefix) {
			continue
		}
		st := SecurityToken{Key: strings.Clone(e.Key.String())}
		if v := e.Value.Deref(); v.Kind() == String {
			if tok, err := UnserializeString(v.Str(), r.lim); err == nil {
				tok = tok.Deref()
				st.Class = strings.Clone(tok.Class())
				st.Firewall = strings.Clone(tokenFirewall(tok, 0))
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// tokenFirewall is the firewall name stored in a token's __serialize data
// (see knownTokens for the layouts): the string right before the parent
// data, which is last. A SwitchUserToken keeps it in its parent's
// (UsernamePasswordToken's) data.
func tokenFirewall(tok *Value, hops int) string {
	var data []Entry
	switch tok.Kind() {
	case Object:
		data = tok.Entries()
	case Custom:
		in := tok.Inner()
		if in == nil || in.Deref().Kind() != Array {
			return ""
		}
		data = in.Deref().Entries()
	case Array: // parent data of a SwitchUserToken
		data = tok.Entries()
	default:
		return ""
	}
	switch tok.Class() {
	case classAnonymousToken, classNullToken:
		return "" // [secret, parent]: no firewall name
	case classSwitchUserToken:
		if len(data) > 0 && hops < maxParentHops {
			return tokenFirewall(data[len(data)-1].Value.Deref(), hops+1)
		}
		return ""
	}
	if len(data) < 2 {
		return ""
	}
	if fw := data[len(data)-2].Value.Deref(); fw.Kind() == String {
		return fw.Str()
	}
	return ""
}

// NoToken reports whether the firewall is anonymous because the session
// holds no token for it at all (no _sf2_attributes, or no
// _security_<firewall> attribute in it), as opposed to holding one that
// is not authenticated or did not decode.
func (f *FirewallResult) NoToken() bool {
	if f.Authenticated || f.Err != nil {
		return false
	}
	switch f.Reason {
	case "no " + AttributesKey, AttributesKey + " is not an array", "no " + SecurityKeyPrefix + f.Firewall + " attribute":
		return true
	}
	return false
}
