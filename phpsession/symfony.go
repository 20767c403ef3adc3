package phpsession

import (
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Symfony class names the token layer recognises.
const (
	classUsernamePasswordToken   = `Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken`
	classAnonymousToken          = `Symfony\Component\Security\Core\Authentication\Token\AnonymousToken`
	classNullToken               = `Symfony\Component\Security\Core\Authentication\Token\NullToken`
	classRememberMeToken         = `Symfony\Component\Security\Core\Authentication\Token\RememberMeToken`
	classPreAuthenticatedToken   = `Symfony\Component\Security\Core\Authentication\Token\PreAuthenticatedToken`
	classSwitchUserToken         = `Symfony\Component\Security\Core\Authentication\Token\SwitchUserToken`
	classPostAuthenticationToken = `Symfony\Component\Security\Http\Authenticator\Token\PostAuthenticationToken`
)

// AttributesKey is the session variable holding Symfony's AttributeBag
// (AttributeBag::$storageKey default).
const AttributesKey = "_sf2_attributes"

// SecurityKeyPrefix prefixes the AttributeBag key under which Symfony's
// ContextListener stores serialize($token) for a firewall context.
const SecurityKeyPrefix = "_security_"

// DefaultUserIdentifierProperties are the user object properties tried, in
// order, for the user identifier when Options.UserIdentifierProperties is
// empty: Symfony 5.3+ naming, the classic username (InMemoryUser/User keep
// it in User's private $username), and the common e-mail login.
func DefaultUserIdentifierProperties() []string {
	return []string{"userIdentifier", "username", "email"}
}

// Options configure a [Reader].
type Options struct {
	// Format is the app's session.serialize_handler; "" means php.
	Format Format
	// Firewalls are the Symfony firewall context names to look up
	// (_security_<name>), in the order results are reported. Required.
	Firewalls []string
	// Limits bound decoding; zero fields mean DefaultLimits.
	Limits Limits
	// UserIdentifierProperties are the property names tried, in order, on a
	// user object to find its identifier (any visibility, any declaring
	// class). Empty means DefaultUserIdentifierProperties().
	UserIdentifierProperties []string
}

// Reader extracts Symfony security tokens from session records. It is
// configured once by [NewReader] and safe for concurrent use.
type Reader struct {
	format  Format
	lim     Limits
	fws     []string
	keys    []string // "_security_" + fws[i]
	idProps []string
	pool    sync.Pool // *decoder, reused so a Read allocates little
}

// NewReader validates opt and returns a Reader.
func NewReader(opt Options) (*Reader, error) {
	f, err := checkFormat(opt.Format)
	if err != nil {
		return nil, err
	}
	lim, err := opt.Limits.normalized()
	if err != nil {
		return nil, err
	}
	if len(opt.Firewalls) == 0 {
		return nil, errors.New("phpsession: no firewalls configured")
	}
	seen := make(map[string]bool, len(opt.Firewalls))
	r := &Reader{format: f, lim: lim}
	for _, fw := range opt.Firewalls {
		if fw == "" {
			return nil, errors.New("phpsession: empty firewall name")
		}
		if seen[fw] {
			return nil, fmt.Errorf("phpsession: firewall %q configured twice", fw)
		}
		seen[fw] = true
		r.fws = append(r.fws, fw)
		r.keys = append(r.keys, SecurityKeyPrefix+fw)
	}
	r.idProps = opt.UserIdentifierProperties
	if len(r.idProps) == 0 {
		r.idProps = DefaultUserIdentifierProperties()
	}
	for _, p := range r.idProps {
		if p == "" {
			return nil, errors.New("phpsession: empty user identifier property name")
		}
	}
	r.idProps = append([]string(nil), r.idProps...)
	r.pool.New = func() any { return new(decoder) }
	return r, nil
}

// Result is what one session says about each configured firewall.
type Result struct {
	// Firewalls has one entry per configured firewall, in configured order.
	Firewalls []FirewallResult `json:"firewalls"`
}

// FirewallResult is the authentication state of one firewall.
type FirewallResult struct {
	// Firewall is the configured firewall (context) name.
	Firewall string `json:"firewall"`
	// Authenticated is true when the session holds a token Symfony would
	// treat as logged in for this firewall (not anonymous, authenticated
	// flag set, with a user).
	Authenticated bool `json:"authenticated"`
	// Token is nil unless Authenticated.
	Token *Token `json:"token,omitempty"`
	// Reason says why the firewall is not authenticated, e.g. "no
	// _sf2_attributes", "no _security_main attribute", "AnonymousToken",
	// "token not authenticated", or a decode error.
	Reason string `json:"reason,omitempty"`
	// Err is set when the reason is an error: it wraps ErrMalformed or
	// ErrLimit (the token string did not decode) or ErrUnsupportedToken (it
	// decoded but its layout is unknown). A broken token for one firewall
	// does not fail the others, so it is reported here, not by Read.
	Err error `json:"-"`
}

// Token is the part of a Symfony security token the gateway needs.
type Token struct {
	// Class is the token's FQCN, e.g.
	// Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken.
	Class string `json:"token_class"`
	// UserIdentifier is what getUserIdentifier() returns.
	UserIdentifier string `json:"user_identifier"`
	// UserClass is the user's FQCN, or "string" for a plain-string user.
	UserClass string `json:"user_class"`
	// Roles are the token's role names (AbstractToken::$roleNames).
	Roles []string `json:"roles"`
}

// Read decodes one session record and reports every configured firewall.
// It returns an error (wrapping ErrMalformed or ErrLimit) only when the
// record as a whole cannot be decoded; everything firewall-specific is in
// the Result. Strings in the Result do not alias data.
func (r *Reader) Read(data []byte) (*Result, error) {
	if len(data) > r.lim.MaxInput {
		return nil, limitErr(r.lim.MaxInput, "session of %d bytes exceeds MaxInput %d", len(data), r.lim.MaxInput)
	}
	d := r.pool.Get().(*decoder)
	defer r.put(d)
	d.reset(string(data), r.lim)
	vars, err := d.session(r.format)
	if err != nil {
		return nil, err
	}

	res := &Result{Firewalls: make([]FirewallResult, len(r.fws))}
	var attrs *Value
	for i := len(vars) - 1; i >= 0; i-- { // last one wins, as in PHP
		if !vars[i].Key.isInt && vars[i].Key.str == AttributesKey {
			attrs = vars[i].Value.Deref()
			break
		}
	}
	for i, fw := range r.fws {
		fr := &res.Firewalls[i]
		fr.Firewall = fw
		switch {
		case attrs == nil:
			fr.Reason = "no " + AttributesKey
		case attrs.kind != Array:
			fr.Reason = AttributesKey + " is not an array"
		default:
			r.firewall(d, fr, attrs, r.keys[i])
		}
	}
	return res, nil
}

// put returns d to the pool unless a huge session grew its buffers; the
// pool should hold what typical sessions need, not the worst case.
func (r *Reader) put(d *decoder) {
	d.s = ""
	d.top = Value{}
	clear(d.arena)
	d.arena = d.arena[:0]
	if cap(d.stack) > 4096 || cap(d.slotKinds) > 1<<16 || cap(d.table) > 4096 {
		return
	}
	r.pool.Put(d)
}

// firewall fills fr from the AttributeBag entry key.
func (r *Reader) firewall(d *decoder, fr *FirewallResult, attrs *Value, key string) {
	sv, ok := attrs.Get(key)
	if !ok {
		fr.Reason = "no " + key + " attribute"
		return
	}
	sv = sv.Deref()
	if sv.kind != String {
		fr.Reason = key + " is not a string but " + sv.kind.String()
		fr.Err = fmt.Errorf("%w: %s", ErrUnsupportedToken, fr.Reason)
		return
	}
	// A fresh unserialize() call: new slot numbering, fresh counters; the
	// arena keeps growing, so the session values stay valid.
	d.reset(sv.str, r.lim)
	// The token lives in the pooled decoder so it does not escape per Read.
	tok := &d.top
	*tok = Value{}
	if err := d.one(tok); err != nil {
		fr.Err = tokenDecodeError(err, key, sv)
		fr.Reason = fr.Err.Error()
		return
	}
	info, reason, err := extractToken(tok, r.idProps)
	if reason != "" || err != nil {
		fr.Reason, fr.Err = reason, err
		if err != nil && reason == "" {
			fr.Reason = err.Error()
		}
		return
	}
	fr.Authenticated = true
	fr.Token = info.detach()
}

// tokenDecodeError rebases a decode error inside the token string onto the
// session record, when the string was a plain s: (its offset is known).
func tokenDecodeError(err error, key string, sv *Value) error {
	var de *DecodeError
	if !errors.As(err, &de) {
		return err
	}
	out := *de
	if sv.num != noOffset {
		out.Offset = int(sv.num) + de.Offset
		out.Context = fmt.Sprintf("token in %s, byte %d of it", key, de.Offset)
	} else {
		out.Context = "token in " + key
	}
	return &out
}

// tokenInfo is what a token layout yields; strings alias the decoder input
// until detach copies them.
type tokenInfo struct {
	class, userID, userClass string
	roles                    *Value // Array of String values (checked)
}

// detach copies all strings of t into one fresh allocation so the Result
// does not keep the whole session record alive.
func (t *tokenInfo) detach() *Token {
	roles := t.roles.Entries()
	n := len(t.class) + len(t.userID) + len(t.userClass)
	for i := range roles {
		n += len(roles[i].Value.Deref().str)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(t.class)
	b.WriteString(t.userID)
	b.WriteString(t.userClass)
	for i := range roles {
		b.WriteString(roles[i].Value.Deref().str)
	}
	all := b.String()
	cut := func(n int) string { s := all[:n]; all = all[n:]; return s }
	out := &Token{
		Class:          cut(len(t.class)),
		UserIdentifier: cut(len(t.userID)),
		UserClass:      cut(len(t.userClass)),
		Roles:          make([]string, len(roles)),
	}
	for i := range roles {
		out.Roles[i] = cut(len(roles[i].Value.Deref().str))
	}
	return out
}

// parentIndex says where each known token class's __serialize() puts
// parent::__serialize() in its data array (Symfony 5.4 sources):
//
//	UsernamePasswordToken, PreAuthenticatedToken: [credentials, firewallName, parent]
//	RememberMeToken:         [secret, firewallName, parent]
//	SwitchUserToken:         [originalToken, originatedFromUri, parent(UsernamePasswordToken)]
//	PostAuthenticationToken: [firewallName, parent]
//	AnonymousToken:          [secret, parent]
//
// Unknown (application) token classes follow Symfony's documented rule of
// appending parent data last, which is also the fallback.
var parentIndex = map[string]int{
	classUsernamePasswordToken:   2,
	classPreAuthenticatedToken:   2,
	classRememberMeToken:         2,
	classSwitchUserToken:         2,
	classPostAuthenticationToken: 1,
	classAnonymousToken:          1,
}

// maxParentHops bounds the descent through nested parent data
// (SwitchUserToken -> UsernamePasswordToken -> AbstractToken is 2).
const maxParentHops = 8

// extractToken turns a decoded token into tokenInfo. It returns a non-empty
// reason when the token is valid but not an authenticated one, and an error
// (with reason) when the layout is not understood.
//
// Only the PHP >= 7.4 __serialize() layout (O:Class:n:{i:0;...}) of Symfony
// >= 4.3 is handled; the Serializable (C:) layouts of older Symfony versions
// and PHP < 7.4 plug in here later.
func extractToken(tok *Value, idProps []string) (tokenInfo, string, error) {
	tok = tok.Deref()
	switch tok.Class() {
	case classAnonymousToken:
		return tokenInfo{}, "AnonymousToken", nil
	case classNullToken:
		return tokenInfo{}, "NullToken", nil
	}
	if tok.kind != Object {
		return unsupported("token is a %v, not an object", tok.kind)
	}
	class := tok.class
	abs, err := abstractTokenData(tok)
	if err != nil {
		return tokenInfo{}, "", err
	}
	// AbstractToken::__serialize(): [user, authenticated, null, attributes, roleNames]
	user, authn, roleNames := &abs[0].Value, &abs[1].Value, &abs[4].Value
	if authn = authn.Deref(); authn.kind != Bool {
		return unsupported("%s: authenticated flag is a %v", clip(class), authn.kind)
	}
	if !authn.Bool() {
		// Symfony 5.4 ContextListener never treats such a token as logged in.
		return tokenInfo{}, "token not authenticated", nil
	}
	info := tokenInfo{class: class}
	roleNames = roleNames.Deref()
	if roleNames.kind != Array {
		return unsupported("%s: roleNames is a %v", clip(class), roleNames.kind)
	}
	for i := range roleNames.items {
		rv := roleNames.items[i].Value.Deref()
		if rv.kind != String {
			return unsupported("%s: role %d is a %v, not a string", clip(class), i, rv.kind)
		}
	}
	info.roles = roleNames
	user = user.Deref()
	switch user.kind {
	case Null:
		return tokenInfo{}, "token has no user", nil
	case String:
		info.userID, info.userClass = user.str, "string"
	case Object:
		id, ok := userIdentifier(user, idProps)
		if !ok {
			return unsupported("user class %s has none of the identifier properties %v", clip(user.class), idProps)
		}
		info.userID, info.userClass = id, user.class
	default:
		return unsupported("user is a %v (class %q)", user.kind, clip(user.Class()))
	}
	return info, "", nil
}

func unsupported(format string, args ...any) (tokenInfo, string, error) {
	err := fmt.Errorf("%w: "+format, append([]any{ErrUnsupportedToken}, args...)...)
	return tokenInfo{}, err.Error(), err
}

// abstractTokenData finds AbstractToken's own __serialize() array inside a
// token's data by following the parent-data position of each level, and
// returns its entries (exactly 5, keys 0..4).
func abstractTokenData(tok *Value) ([]Entry, error) {
	data := tok.items
	idx, known := parentIndex[tok.class]
	for hop := 0; hop <= maxParentHops; hop++ {
		if isAbstractTokenData(data) {
			return data, nil
		}
		var next *Value
		if known {
			if idx < len(data) && data[idx].Key.isInt && data[idx].Key.num == int64(idx) {
				next = &data[idx].Value
			}
		} else if n := len(data); n > 0 {
			next = &data[n-1].Value
		}
		next = next.Deref()
		if next == nil || next.kind != Array {
			break
		}
		data = next.items
		// Below the first level the parent is a Symfony class whose layout
		// we know only by its shape; e.g. SwitchUserToken's parent is
		// UsernamePasswordToken, which also keeps its parent last.
		known = false
	}
	return nil, fmt.Errorf("%w: %s: no AbstractToken data [user, authenticated, null, attributes, roleNames] found", ErrUnsupportedToken, clip(tok.class))
}

// isAbstractTokenData reports whether entries have AbstractToken::__serialize()'s
// shape: exactly keys 0..4 with a bool at 1 and arrays at 3 and 4.
func isAbstractTokenData(a []Entry) bool {
	if len(a) != 5 {
		return false
	}
	for i := range a {
		if k := a[i].Key; !k.isInt || k.num != int64(i) {
			return false
		}
	}
	return a[1].Value.Deref().kind == Bool &&
		a[3].Value.Deref().kind == Array &&
		a[4].Value.Deref().kind == Array
}

// userIdentifier looks for the first configured property holding a string
// (or integer, for numeric ids) on a user object.
func userIdentifier(user *Value, props []string) (string, bool) {
	for _, name := range props {
		v, _, ok := user.Prop(name)
		if !ok {
			continue
		}
		switch v = v.Deref(); v.kind {
		case String:
			return v.str, true
		case Int:
			return Key{num: v.Int(), isInt: true}.String(), true
		}
	}
	return "", false
}
