package phpsession

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"
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
	classPostAuthGuardToken      = `Symfony\Component\Security\Guard\Token\PostAuthenticationGuardToken`
	classRole                    = `Symfony\Component\Security\Core\Role\Role`
	classSwitchUserRole          = `Symfony\Component\Security\Core\Role\SwitchUserRole`
)

// MetaKey is the session variable holding Symfony's MetadataBag
// (MetadataBag::$storageKey default).
const MetaKey = "_sf2_meta"

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
	// UserIdentifierPropertiesByClass overrides UserIdentifierProperties
	// for the user classes it names (exact FQCN as PHP writes it, without
	// a leading backslash). For a user that implements \Serializable (C:,
	// e.g. the classic serialize([$this->id, $this->username, ...]) of
	// Symfony <= 4 entities) the names are keys of the payload array, so
	// "1" picks the second element.
	UserIdentifierPropertiesByClass map[string][]string
}

// Reader extracts Symfony security tokens from session records. It is
// configured once by [NewReader] and safe for concurrent use.
type Reader struct {
	format  Format
	lim     Limits
	fws     []string
	keys    []string // "_security_" + fws[i]
	idProps []string
	byClass map[string][]string
	nested  bool      // a key contains '/': NamespacedAttributeBag lookups
	noScan  bool      // tests: always take the full decode
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
		r.nested = r.nested || strings.Contains(fw, "/")
	}
	r.idProps = opt.UserIdentifierProperties
	if len(r.idProps) == 0 {
		r.idProps = DefaultUserIdentifierProperties()
	}
	if err := checkProps(r.idProps); err != nil {
		return nil, err
	}
	r.idProps = append([]string(nil), r.idProps...)
	if len(opt.UserIdentifierPropertiesByClass) > 0 {
		r.byClass = make(map[string][]string, len(opt.UserIdentifierPropertiesByClass))
		for class, props := range opt.UserIdentifierPropertiesByClass {
			if class == "" || class[0] == '\\' {
				return nil, fmt.Errorf("phpsession: user class %q must be a FQCN without leading backslash", class)
			}
			if len(props) == 0 {
				return nil, fmt.Errorf("phpsession: no identifier properties for user class %q", class)
			}
			if err := checkProps(props); err != nil {
				return nil, err
			}
			r.byClass[class] = append([]string(nil), props...)
		}
	}
	r.pool.New = func() any { return new(decoder) }
	return r, nil
}

func checkProps(props []string) error {
	for _, p := range props {
		if p == "" {
			return errors.New("phpsession: empty user identifier property name")
		}
	}
	return nil
}

// Result is what one session says about each configured firewall.
type Result struct {
	// Format is the serialize handler that decoded the record: the
	// configured one, or the detected one when it is auto.
	Format Format `json:"format,omitempty"`
	// Meta is Symfony's MetadataBag (_sf2_meta), nil when absent.
	Meta *Meta `json:"meta,omitempty"`
	// Firewalls has one entry per configured firewall, in configured order.
	Firewalls []FirewallResult `json:"firewalls"`
}

// Meta is Symfony's session MetadataBag: Unix times of the session's
// creation and last write, and the cookie lifetime in seconds (0: until the
// browser closes).
type Meta struct {
	Created  int64 `json:"created"`
	Updated  int64 `json:"updated"`
	Lifetime int64 `json:"lifetime"`
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
	// Roles are the token's role names (AbstractToken::$roleNames, the
	// Role objects of Symfony <= 4.2, or the user's roles where Symfony 7.3+
	// leaves them out of the token).
	Roles []string `json:"roles"`
	// Impersonator is the identifier of the user who switched to this one
	// (SwitchUserToken's original token, or the SwitchUserRole of Symfony
	// <= 4.0); empty when nobody impersonates.
	Impersonator string `json:"impersonator,omitempty"`
	// ImpersonatorClass is the impersonating user's class ("string" for a
	// plain-string user), empty with Impersonator.
	ImpersonatorClass string `json:"impersonator_class,omitempty"`
	// Layout says how the token was stored: "__serialize" (O:, Symfony >=
	// 4.3 on PHP >= 7.4) or "Serializable" (C:, Symfony <= 4.2, or any
	// version on PHP < 7.4).
	Layout string `json:"layout,omitempty"`
	// BestEffort is true when part of the token is a guess: its class is
	// not one Symfony ships and was read by AbstractToken's documented
	// layout (parent data last), or its user identifier is ambiguous
	// (IdentifierCandidates is set).
	BestEffort bool `json:"best_effort,omitempty"`
	// IdentifierCandidates is set when UserIdentifier is a guess: the user
	// object's class has no identifier properties configured for it (by
	// class), and besides the property the identifier was taken from
	// (first here) other tried properties hold different non-empty values
	// (after it). getUserIdentifier() may return any of them: a user
	// entity with both $username and $email whose login is the e-mail
	// reads as its username unless the class is configured.
	IdentifierCandidates []IdentifierCandidate `json:"identifier_candidates,omitempty"`
}

// IdentifierCandidate is one user property that could be the identifier.
type IdentifierCandidate struct {
	// Property is the property name (or the Serializable payload key).
	Property string `json:"property"`
	// Value is the property's value (an integer in decimal).
	Value string `json:"value"`
}

// Chosen is the property UserIdentifier was read from when the identifier
// is ambiguous, else "".
func (t *Token) Chosen() string {
	if len(t.IdentifierCandidates) == 0 {
		return ""
	}
	return t.IdentifierCandidates[0].Property
}

// Token layouts.
const (
	LayoutSerialize    = "__serialize"
	LayoutSerializable = "Serializable"
)

// Read decodes one session record and reports every configured firewall.
// It returns an error (wrapping ErrMalformed or ErrLimit) only when the
// record as a whole cannot be decoded; everything firewall-specific is in
// the Result. Strings in the Result do not alias data, and data is not
// retained or modified.
//
// The common case costs one pass over the record that builds nothing but
// the token: other session variables and attributes are validated and
// skipped by their lengths. A record with back-references (r:/R:) outside
// the token, or an unusual shape, takes the full decode.
func (r *Reader) Read(data []byte) (*Result, error) {
	if len(data) > r.lim.MaxInput {
		return nil, limitErr(r.lim.MaxInput, "session of %d bytes exceeds MaxInput %d", len(data), r.lim.MaxInput)
	}
	d := r.pool.Get().(*decoder)
	defer r.put(d)
	// No copy: every string that leaves Read is detached (copied), and
	// nothing decoded here outlives the call (put clears the decoder).
	s := ""
	if len(data) > 0 {
		s = unsafe.String(unsafe.SliceData(data), len(data))
	}
	format := r.format
	var cands []Format
	if format == FormatAuto {
		cands = candidates(s)
	} else {
		cands = []Format{format}
	}
	res, meta, tb := newResult(len(r.fws))
	d.tokSpare = tb
	var firstErr error
	for _, f := range cands {
		d.reset(s, r.lim)
		ok := f != FormatIgbinary && !r.nested && !r.noScan && r.scan(d, f, res, meta)
		if ok {
			res.Format = f
			return res, nil
		}
		d.reset(s, r.lim)
		vars, err := d.session(f)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		res.Format = f
		r.fromVars(d, vars, res)
		return res, nil
	}
	return nil, firstErr
}

// resultBlock holds a Result with room for its Meta and one firewall, so
// the common single-firewall Read allocates them together.
type resultBlock struct {
	r    Result
	meta Meta
	fws  [1]FirewallResult
	tok  tokenBlock
}

// tokenBlock holds a Token with room for a small role list.
type tokenBlock struct {
	t Token
	r [6]string
}

// newResult allocates a Result and its firewall slice together.
func newResult(n int) (*Result, *Meta, *tokenBlock) {
	x := &resultBlock{}
	if n == 1 {
		x.r.Firewalls = x.fws[:]
	} else {
		x.r.Firewalls = make([]FirewallResult, n)
	}
	return &x.r, &x.meta, &x.tok
}

// put returns d to the pool unless a huge session grew its buffers; the
// pool should hold what typical sessions need, not the worst case.
func (r *Reader) put(d *decoder) {
	d.s = ""
	d.top = Value{}
	clear(d.arena)
	d.arena = d.arena[:0]
	clear(d.found)
	clear(d.roleBuf)
	d.roleBuf = d.roleBuf[:0]
	clear(d.roots)
	d.roots = d.roots[:0]
	clear(d.strs)
	d.strs = d.strs[:0]
	d.skipping = false
	d.tokSpare = nil
	if cap(d.stack) > 4096 || cap(d.slotKinds) > 1<<16 || cap(d.table) > 4096 || cap(d.strs) > 4096 {
		return
	}
	r.pool.Put(d)
}

// fromVars fills res from fully decoded session variables.
func (r *Reader) fromVars(d *decoder, vars []Entry, res *Result) {
	var attrs *Value
	for i := len(vars) - 1; i >= 0; i-- { // last one wins, as in PHP
		if !vars[i].Key.isInt && vars[i].Key.str == AttributesKey {
			attrs = vars[i].Value.Deref()
			break
		}
	}
	for i := len(vars) - 1; i >= 0; i-- {
		if !vars[i].Key.isInt && vars[i].Key.str == MetaKey {
			res.Meta = metaOf(vars[i].Value.Deref())
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
			sv, ok := attrs.Get(r.keys[i])
			if !ok && strings.Contains(r.keys[i], "/") {
				sv, ok = namespacedGet(attrs, r.keys[i])
			}
			if !ok {
				fr.Reason = "no " + r.keys[i] + " attribute"
				continue
			}
			r.firewall(d, fr, sv.Deref(), r.keys[i])
		}
	}
}

// namespacedGet looks key up the way NamespacedAttributeBag stores it:
// "a/b/c" lives at ['a']['b']['c'].
func namespacedGet(attrs *Value, key string) (*Value, bool) {
	v := attrs
	for {
		part, rest, more := strings.Cut(key, "/")
		e, ok := v.Get(part)
		if !ok {
			return nil, false
		}
		if !more {
			return e, true
		}
		if v = e.Deref(); v.kind != Array {
			return nil, false
		}
		key = rest
	}
}

// metaOf reads MetadataBag's array {u: updated, c: created, l: lifetime}.
func metaOf(v *Value) *Meta {
	if v.kind != Array {
		return nil
	}
	m := &Meta{}
	for i := range v.items {
		e := &v.items[i]
		if e.Key.isInt {
			continue
		}
		setMeta(m, e.Key.str, e.Value.Deref())
	}
	return m
}

func setMeta(m *Meta, k string, v *Value) {
	if v.kind != Int {
		return
	}
	switch k {
	case "u":
		m.Updated = v.Int()
	case "c":
		m.Created = v.Int()
	case "l":
		m.Lifetime = v.Int()
	}
}

// scan is Read's fast path: one validating pass over the record that
// numbers and checks every value like the full decode but builds only the
// attributes it needs. It returns false when the full decode must decide:
// the record is malformed (the full decode reports the error), it has
// back-references (whose targets the skipped values would be), or
// _sf2_attributes is not a plain array.
func (r *Reader) scan(d *decoder, f Format, res *Result, metaOut *Meta) bool {
	d.skipping = true
	defer func() { d.skipping = false }()
	if cap(d.found) < len(r.keys) {
		d.found = make([]Value, len(r.keys))
	}
	d.found = d.found[:len(r.keys)]
	clear(d.found)
	var meta Meta
	attrsSeen, metaSeen := false, false
	// visit scans the value of the session variable name: the two bags
	// for what they hold, any other value only to check and number it.
	visit := func(name string) error {
		switch name {
		case AttributesKey:
			attrsSeen = true
			clear(d.found) // a later _sf2_attributes replaces an earlier one
			return r.scanAttrs(d)
		case MetaKey:
			metaSeen = true
			meta = Meta{}
			return d.scanMeta(&meta)
		}
		var v Value
		return d.value(&v)
	}
	switch f {
	case FormatPHPSerialize:
		if d.eof() {
			break
		}
		if d.s[0] != 'a' {
			return false
		}
		err := d.scanArray(func(k Key) error {
			if k.isInt {
				var v Value
				return d.value(&v)
			}
			return visit(k.str)
		})
		if err != nil || d.pos != len(d.s) {
			return false
		}
	default:
		name := d.phpName
		if f == FormatPHPBinary {
			name = d.binaryName
		}
		for !d.eof() {
			n, err := name()
			if err != nil || visit(n) != nil {
				return false
			}
		}
	}
	if d.refs > 0 {
		return false
	}
	d.skipping = false
	if metaSeen {
		*metaOut = meta
		res.Meta = metaOut
	}
	for i, fw := range r.fws {
		fr := &res.Firewalls[i]
		fr.Firewall = fw
		switch sv := &d.found[i]; {
		case !attrsSeen:
			fr.Reason = "no " + AttributesKey
		case sv.flag == 0:
			fr.Reason = "no " + r.keys[i] + " attribute"
		default:
			r.firewall(d, fr, sv, r.keys[i])
		}
	}
	return true
}

// scanArray scans an array like value/array do (slot, counters, depth),
// calling entry with each key; entry must consume the entry's value.
func (d *decoder) scanArray(entry func(k Key) error) error {
	n, err := d.scanArrayOpen()
	if err != nil {
		return err
	}
	for range n {
		k, err := d.key(true, "array")
		if err != nil {
			return err
		}
		if err := entry(k); err != nil {
			return err
		}
	}
	if err := d.expectIn('}', "closing ", "array", " (more entries than its count?)"); err != nil {
		return err
	}
	d.depth--
	return nil
}

// scanArrayOpen consumes "a:<n>:{" like value/array do (slot, counters,
// depth) and returns n.
func (d *decoder) scanArrayOpen() (int, error) {
	start := d.pos
	d.elems++
	if d.elems > d.lim.MaxElements {
		return 0, limitErr(start, "more than MaxElements %d values", d.lim.MaxElements)
	}
	if !hasPrefix(d.s[d.pos:], "a:") {
		return 0, malformed(start, "expected an array")
	}
	d.pos += 2
	d.pushSlot(Array)
	n, err := d.count("array", false)
	if err != nil {
		return 0, err
	}
	return n, d.enter(start)
}

// scanAttrs scans the AttributeBag array, keeping the values stored under
// the firewall keys (found[i].flag = 1 marks "present").
func (r *Reader) scanAttrs(d *decoder) error {
	if d.eof() || d.s[d.pos] != 'a' {
		return malformed(d.pos, "not an array") // the full decode decides
	}
	return d.scanArray(func(k Key) error {
		idx := -1
		if !k.isInt && len(k.str) > len(SecurityKeyPrefix) && k.str[:len(SecurityKeyPrefix)] == SecurityKeyPrefix {
			for i, key := range r.keys {
				if key == k.str {
					idx = i
					break
				}
			}
		}
		var v Value
		if err := d.value(&v); err != nil {
			return err
		}
		if idx >= 0 {
			v.flag = 1
			d.found[idx] = v
		}
		return nil
	})
}

// scanMeta scans the MetadataBag array for its integers.
func (d *decoder) scanMeta(m *Meta) error {
	if d.eof() || d.s[d.pos] != 'a' {
		var v Value
		return d.value(&v)
	}
	return d.scanArray(func(k Key) error {
		var v Value
		if err := d.value(&v); err != nil {
			return err
		}
		if !k.isInt {
			setMeta(m, k.str, &v)
		}
		return nil
	})
}

// firewall fills fr from the attribute value sv (dereferenced).
func (r *Reader) firewall(d *decoder, fr *FirewallResult, sv *Value, key string) {
	if sv.kind != String {
		fr.Reason = key + " is not a string but " + sv.kind.String()
		fr.Err = fmt.Errorf("%w: %s", ErrUnsupportedToken, fr.Reason)
		return
	}
	// A fresh unserialize() call: new slot numbering, fresh counters; the
	// arena keeps growing, so the session values stay valid.
	d.reset(sv.str, r.lim)
	d.roots = d.roots[:0]
	// The token lives in the pooled decoder so it does not escape per Read.
	tok := &d.top
	*tok = Value{}
	if err := d.one(tok); err != nil {
		fr.Err = tokenDecodeError(err, key, sv)
		fr.Reason = fr.Err.Error()
		return
	}
	d.roots = append(d.roots, tok)
	x := extractor{d: d, r: r}
	info, reason, err := x.token(tok, 0)
	if reason != "" || err != nil {
		fr.Reason, fr.Err = reason, err
		if err != nil && reason == "" {
			fr.Reason = err.Error()
		}
		return
	}
	fr.Authenticated = true
	fr.Token = info.detach(d.tokSpare)
	d.tokSpare = nil
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
	roles                    []string // in the decoder's roleBuf
	impID, impClass          string
	layout                   string
	bestEffort               bool
	// cands are the identifier candidates when the identifier is
	// ambiguous (nil otherwise, the common case, which allocates nothing).
	cands []IdentifierCandidate
}

// detach copies all strings of t into one fresh allocation so the Result
// does not keep the whole session record alive.
func (t *tokenInfo) detach(x *tokenBlock) *Token {
	n := len(t.class) + len(t.userID) + len(t.userClass) + len(t.impID) + len(t.impClass)
	for _, r := range t.roles {
		n += len(r)
	}
	for _, c := range t.cands {
		n += len(c.Property) + len(c.Value)
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range [...]string{t.class, t.userID, t.userClass, t.impID, t.impClass} {
		b.WriteString(s)
	}
	for _, r := range t.roles {
		b.WriteString(r)
	}
	for _, c := range t.cands {
		b.WriteString(c.Property)
		b.WriteString(c.Value)
	}
	all := b.String()
	cut := func(n int) string { s := all[:n]; all = all[n:]; return s }
	// One allocation for the Token and a small role list, unless the
	// caller has one ready.
	if x == nil {
		x = &tokenBlock{}
	}
	out := &x.t
	out.Class = cut(len(t.class))
	out.UserIdentifier = cut(len(t.userID))
	out.UserClass = cut(len(t.userClass))
	out.Impersonator = cut(len(t.impID))
	out.ImpersonatorClass = cut(len(t.impClass))
	out.Layout = t.layout
	out.BestEffort = t.bestEffort
	if len(t.roles) <= len(x.r) {
		out.Roles = x.r[:len(t.roles):len(t.roles)]
	} else {
		out.Roles = make([]string, len(t.roles))
	}
	for i, r := range t.roles {
		out.Roles[i] = cut(len(r))
	}
	out.IdentifierCandidates = nil
	if len(t.cands) > 0 {
		out.IdentifierCandidates = make([]IdentifierCandidate, len(t.cands))
		for i, c := range t.cands {
			out.IdentifierCandidates[i] = IdentifierCandidate{Property: cut(len(c.Property)), Value: cut(len(c.Value))}
		}
	}
	return out
}

// knownTokens are the token classes Symfony ships, with where each one's
// data puts its parent class data (Symfony sources 2.8 to 7.x):
//
//	__serialize (O:), 4.3+:
//	  UsernamePasswordToken, PreAuthenticatedToken: [credentials|null, firewallName, parent]
//	  RememberMeToken:         [secret|null, firewallName, parent]
//	  SwitchUserToken:         [originalToken, originatedFromUri, parent]  (4.3: [originalToken, parent])
//	  PostAuthenticationToken: [firewallName, parent]  (6.x+: [null, firewallName, parent])
//	  AnonymousToken:          [secret, parent]
//	  AbstractToken:           [user, authenticated, roles|null, attributes, roleNames]
//	                           (6.x+: authenticated is always true; 7.3+ drops roleNames
//	                           when the user is EquatableInterface)
//	Serializable (C:), <= 4.2 and PHP < 7.4: the same lists, serialized, with
//	  the parent data as a nested serialize() string (<= 4.1) or array (4.2+);
//	  AbstractToken: [user, authenticated, roles (Role objects), attributes].
//
// The parent is the last element in every one of them; the table only
// says which classes are Symfony's own (not best effort).
var knownTokens = map[string]bool{
	classUsernamePasswordToken:   true,
	classPreAuthenticatedToken:   true,
	classRememberMeToken:         true,
	classSwitchUserToken:         true,
	classPostAuthenticationToken: true,
	classPostAuthGuardToken:      true,
	classAnonymousToken:          true,
	classNullToken:               true,
}

// maxParentHops bounds the descent through nested parent data
// (SwitchUserToken -> UsernamePasswordToken -> AbstractToken is 2).
const maxParentHops = 8

// maxTokenNesting bounds the descent into original tokens of
// SwitchUserToken (a switched user switching again nests twice).
const maxTokenNesting = 4

// extractor turns a decoded token into tokenInfo.
type extractor struct {
	d *decoder
	r *Reader
}

// token returns the token's facts, or a non-empty reason when it is valid
// but not an authenticated one, or an error (with reason) when its layout
// is not understood.
func (x *extractor) token(tok *Value, nesting int) (tokenInfo, string, error) {
	tok = tok.Deref()
	class := tok.Class()
	switch class {
	case classAnonymousToken:
		return tokenInfo{}, "AnonymousToken", nil
	case classNullToken:
		return tokenInfo{}, "NullToken", nil
	}
	var data []Entry
	info := tokenInfo{class: class, bestEffort: !knownTokens[class]}
	switch tok.kind {
	case Object:
		data, info.layout = tok.items, LayoutSerialize
	case Custom:
		in := tok.Inner()
		if in == nil || in.Deref().kind != Array {
			return unsupported("%s: Serializable payload is not a serialized array", clip(class))
		}
		data, info.layout = in.Deref().items, LayoutSerializable
	default:
		return unsupported("token is a %v, not an object", tok.kind)
	}
	abs, err := x.abstractTokenData(class, data)
	if err != nil {
		return tokenInfo{}, "", err
	}
	// [user, authenticated, roles|null, attributes, roleNames?]
	user, authn := abs[0].Value.Deref(), abs[1].Value.Deref()
	if !authn.Bool() {
		// Symfony <= 5.4 never treats such a token as logged in.
		return tokenInfo{}, "token not authenticated", nil
	}
	switch user.kind {
	case Null:
		return tokenInfo{}, "token has no user", nil
	case String:
		info.userID, info.userClass = user.str, "string"
	case Object, Custom:
		id, cands, ok := x.userIdentifier(user)
		if !ok {
			return unsupported("user class %s has none of the identifier properties %v", clip(user.class), x.propsFor(user.class))
		}
		info.userID, info.userClass = id, user.class
		if cands != nil {
			info.cands, info.bestEffort = cands, true
		}
	default:
		return unsupported("user is a %v (class %q)", user.kind, clip(user.Class()))
	}
	rolesAt := len(x.d.roleBuf)
	var roles *Value
	switch {
	case len(abs) == 5:
		roles = abs[4].Value.Deref()
	case abs[2].Value.Deref().kind == Array:
		roles = abs[2].Value.Deref()
	default: // Symfony 7.3+: the token takes its roles from the user
		if user.kind == Object {
			if rv, _, ok := user.Prop("roles"); ok {
				roles = rv.Deref()
			}
		}
		if roles == nil {
			return unsupported("%s: no role names in the token and no roles on the user", clip(class))
		}
	}
	if roles.kind != Array {
		return unsupported("%s: roles are a %v", clip(class), roles.kind)
	}
	var switchRole *Value
	for i := range roles.items {
		rv := roles.items[i].Value.Deref()
		switch rv.kind {
		case String:
			x.d.roleBuf = append(x.d.roleBuf, rv.str)
			continue
		case Object: // Symfony <= 4.x Role / SwitchUserRole objects
			if name, _, ok := rv.Prop("role"); ok && name.Deref().kind == String {
				x.d.roleBuf = append(x.d.roleBuf, name.Deref().str)
				if rv.class == classSwitchUserRole {
					switchRole = rv
				}
				continue
			}
		}
		return unsupported("%s: role %d is a %v, not a role name", clip(class), i, rv.kind)
	}
	info.roles = x.d.roleBuf[rolesAt:]

	// Impersonation: SwitchUserToken keeps the original token first;
	// Symfony <= 4.0 kept it in a SwitchUserRole's $source.
	var orig *Value
	if class == classSwitchUserToken && len(data) > 0 {
		orig = data[0].Value.Deref()
	} else if switchRole != nil {
		if src, _, ok := switchRole.Prop("source"); ok {
			orig = src.Deref()
		}
	}
	if orig != nil && (orig.kind == Object || orig.kind == Custom) && nesting < maxTokenNesting {
		oi, reason, err := x.token(orig, nesting+1)
		switch {
		case err != nil:
			return tokenInfo{}, "", fmt.Errorf("original token of %s: %w", clip(class), err)
		case reason != "":
			return unsupported("original token of %s: %s", clip(class), reason)
		}
		info.impID, info.impClass = oi.userID, oi.userClass
	}
	return info, "", nil
}

func unsupported(format string, args ...any) (tokenInfo, string, error) {
	err := fmt.Errorf("%w: "+format, append([]any{ErrUnsupportedToken}, args...)...)
	return tokenInfo{}, err.Error(), err
}

// abstractTokenData finds AbstractToken's own data inside a token's data
// by following the parent data, always the last element, through arrays
// (__serialize, Symfony 4.2+ Serializable) and nested serialize() strings
// (Symfony <= 4.1 Serializable), and returns its entries.
func (x *extractor) abstractTokenData(class string, data []Entry) ([]Entry, error) {
	for range maxParentHops {
		if isAbstractTokenData(data) {
			return data, nil
		}
		n := len(data)
		if n == 0 {
			break
		}
		next := data[n-1].Value.Deref()
		if next.kind == String {
			v, err := x.d.continued(next.str)
			if err != nil {
				return nil, fmt.Errorf("parent data of %s: %w", clip(class), err)
			}
			next = v.Deref()
		}
		if next.kind != Array {
			break
		}
		data = next.items
	}
	return nil, fmt.Errorf("%w: %s: no AbstractToken data [user, authenticated, roles, attributes, roleNames] found", ErrUnsupportedToken, clip(class))
}

// isAbstractTokenData reports whether entries have the shape of
// AbstractToken's data: keys 0..3 or 0..4, a bool at 1, an array or null at
// 2, an array at 3 and, when present, at 4.
func isAbstractTokenData(a []Entry) bool {
	if len(a) != 4 && len(a) != 5 {
		return false
	}
	for i := range a {
		if k := a[i].Key; !k.isInt || k.num != int64(i) {
			return false
		}
	}
	if k := a[2].Value.Deref().kind; k != Array && k != Null {
		return false
	}
	return a[1].Value.Deref().kind == Bool &&
		a[3].Value.Deref().kind == Array &&
		(len(a) == 4 || a[4].Value.Deref().kind == Array)
}

// propsFor returns the identifier properties configured for class.
func (x *extractor) propsFor(class string) []string {
	if p, ok := x.r.byClass[class]; ok {
		return p
	}
	return x.r.idProps
}

// userIdentifier looks for the first configured property holding a string
// (or integer, for numeric ids) on a user object, or the first configured
// key of a Serializable user's payload array.
//
// Unless the user's class has its own properties configured (by class:
// the operator, or the app's security.yaml, said which one is the
// identifier), the remaining properties are checked too: when any holds a
// different non-empty value, the choice is a guess and cands lists the
// chosen property first, then the others (strings alias the decoder input).
// cands is nil in the common, unambiguous case, which allocates nothing.
func (x *extractor) userIdentifier(user *Value) (id string, cands []IdentifierCandidate, ok bool) {
	props, explicit := x.r.byClass[user.class]
	if !explicit {
		props = x.r.idProps
	}
	var arr *Value
	if user.kind == Custom {
		if arr = user.Inner(); arr == nil || arr.Deref().kind != Array {
			return "", nil, false
		}
		arr = arr.Deref()
	}
	chosen := -1
	for i, name := range props {
		s, found, isID := userProp(user, arr, name)
		if !isID {
			continue
		}
		if chosen < 0 {
			chosen, id, ok = i, s, true
			if explicit {
				return id, nil, true
			}
			continue
		}
		if !found || s == id {
			continue
		}
		if cands == nil {
			cands = []IdentifierCandidate{{Property: props[chosen], Value: id}}
		}
		cands = append(cands, IdentifierCandidate{Property: name, Value: s})
	}
	return id, cands, ok
}

// userProp returns the property name of a user object (or key of its
// Serializable payload arr) as the identifier would read it: isID when it
// holds a string or integer, nonEmpty when that is not "".
func userProp(user, arr *Value, name string) (s string, nonEmpty, isID bool) {
	var v *Value
	var ok bool
	if arr != nil {
		v, ok = arr.Get(name)
	} else {
		v, _, ok = user.Prop(name)
	}
	if !ok {
		return "", false, false
	}
	switch v = v.Deref(); v.kind {
	case String:
		return v.str, v.str != "", true
	case Int:
		return Key{num: v.Int(), isInt: true}.String(), true, true
	}
	return "", false, false
}
