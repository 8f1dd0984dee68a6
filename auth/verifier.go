package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/idflow/idflow"
)

// TenantPlaceholder marks a multi-tenant issuer (Entra common/organizations).
const TenantPlaceholder = "{tenantid}"

// MaxTokenBytes bounds a bearer token before any parsing.
const MaxTokenBytes = 16 << 10

// MaxLeeway is the largest clock skew idflow tolerates on exp, nbf and iat.
const MaxLeeway = 60 * time.Second

// ErrInsufficientScope marks a valid token without the required scope.
var ErrInsufficientScope = errors.New("insufficient_scope")

// ErrIDToken marks an ID token sent where an access token is required.
var ErrIDToken = errors.New("an ID token is not an access token")

var (
	errBadDate  = errors.New("bad numeric date")
	errNotJWS   = errors.New("not a compact JWS")
	errTooLarge = errors.New("token too large")
)

// VerifierConfig configures bearer-token verification. The zero value of
// every field is the strict choice; NewVerifier refuses an unsafe config.
type VerifierConfig struct {
	// Issuers are the accepted iss values, exactly. An entry may contain
	// {tenantid}, matched against the token's tid (Tenants then required).
	Issuers []string
	// Audiences: the token's aud must contain one of them.
	Audiences []string
	// UserClaims are tried in order for the user id. Default: per token,
	// oid for an Entra issuer (sub is pairwise there: one user, one sub per
	// app), sub for any other, where an oid claim is just a claim.
	// Mutable claims (MutableClaim) are refused.
	UserClaims []string
	// InsecureAcceptIDTokens lets an OpenID Connect ID token act as its user (a
	// weaker mode for SPAs that cannot get an access token: an ID token is
	// proof of a sign-in at some client, not a grant to call this API). Off,
	// an ID token is refused with a message that says so.
	InsecureAcceptIDTokens bool
	// Tenants, when set, are the only tid values accepted.
	Tenants []string
	// RequiredScope, when set, must be among a user token's delegated scopes.
	RequiredScope string
	// Leeway for exp, nbf and iat; default 30 s, at most MaxLeeway.
	Leeway time.Duration
	// CacheSize bounds the verified-token cache (default 10,000; <0 disables it).
	CacheSize int
	// Now is the clock (tests).
	Now func() time.Time
	// OnCacheLookup, when set, is told whether each lookup in the
	// verified-token cache hit (monitoring).
	OnCacheLookup func(hit bool)
}

// Verifier checks bearer JWTs and turns them into Principals.
type Verifier struct {
	cfg       VerifierConfig
	keys      KeySet
	cache     *tokenCache
	method    idflow.AuthMethod
	needsRaw  bool
	multiTen  bool
	tenantSet map[string]bool
	issuers   map[string]acceptedIssuer // every iss value accepted, templates expanded per allowed tenant
}

// acceptedIssuer is what an accepted iss value implies, computed once.
type acceptedIssuer struct {
	tid   string // for a {tenantid} template's expansion: the tid the token must carry
	entra bool   // EntraIssuer(iss)
}

// Token is a verified bearer token.
type Token struct {
	Principal idflow.Principal
	Audiences []string
}

// NewVerifier returns a Verifier, or an error when cfg would accept too much.
func NewVerifier(cfg VerifierConfig, keys KeySet) (*Verifier, error) {
	if keys == nil {
		return nil, errors.New("auth: a key set is required")
	}
	if len(cfg.Issuers) == 0 || slices.Contains(cfg.Issuers, "") {
		return nil, errors.New("auth: an issuer is required")
	}
	if len(cfg.Audiences) == 0 || slices.Contains(cfg.Audiences, "") {
		return nil, errors.New("auth: at least one audience is required")
	}
	for _, c := range cfg.UserClaims {
		if MutableClaim(c) {
			return nil, fmt.Errorf("auth: the user claim %q can change or be reassigned; use an immutable one (oid for Entra ID, sub elsewhere)", c)
		}
		if strings.TrimSpace(c) == "" {
			return nil, errors.New("auth: an empty user claim name")
		}
	}
	if cfg.InsecureAcceptIDTokens && cfg.RequiredScope != "" {
		return nil, errors.New("auth: ID tokens carry no scope, so with a required scope accepting them would accept none")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.Leeway < 0 || cfg.Leeway > MaxLeeway {
		return nil, fmt.Errorf("auth: leeway must be within (0, %s]", MaxLeeway)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &Verifier{cfg: cfg, keys: keys, method: idflow.AuthBearer, tenantSet: map[string]bool{}}
	for _, iss := range cfg.Issuers {
		if strings.Contains(iss, TenantPlaceholder) {
			v.multiTen = true
		}
	}
	if v.multiTen && len(cfg.Tenants) == 0 {
		return nil, errors.New("auth: a multi-tenant issuer needs an allowlist of tenants (IDFLOW_OIDC_TENANTS)")
	}
	for _, t := range cfg.Tenants {
		v.tenantSet[t] = true
	}
	v.issuers = acceptedIssuers(cfg.Issuers, cfg.Tenants)
	for _, c := range cfg.UserClaims {
		if !knownStringClaim(c) {
			v.needsRaw = true
		}
	}
	size := cfg.CacheSize
	if size == 0 {
		size = 10000
	}
	if size > 0 {
		v.cache = newTokenCache(size)
	}
	return v, nil
}

// Verify checks raw and returns its Principal. Every failure is an
// *idflow.Error with code EUNAUTHORIZED, except a missing required scope
// (EFORBIDDEN); the reason is in the wrapped cause, never the token.
func (v *Verifier) Verify(ctx context.Context, raw string) (Token, error) {
	if len(raw) > MaxTokenBytes {
		return Token{}, unauthorized(errTooLarge)
	}
	if strings.Count(raw, ".") != 2 {
		return Token{}, unauthorized(errNotJWS) // a 5-part JWE, or garbage
	}
	now := v.cfg.Now()
	var digest [32]byte
	if v.cache != nil {
		digest = tokenDigest(raw)
		if tok, ok := v.cache.get(digest, now); ok {
			v.observeCache(true)
			return tok, nil
		}
		v.observeCache(false)
	}
	payload, err := v.keys.VerifySignature(ctx, raw)
	if err != nil {
		if ctx.Err() != nil {
			return Token{}, idflow.WrapError(idflow.EUNAVAILABLE, "key set unavailable", err)
		}
		return Token{}, unauthorized(err)
	}
	tok, err := v.checkClaims(payload, now)
	if err != nil {
		return Token{}, err
	}
	if v.cache != nil {
		v.cache.put(digest, tok, tok.Principal.ExpiresAt.Add(v.cfg.Leeway), now)
	}
	return tok, nil
}

func unauthorized(cause error) error {
	return idflow.WrapError(idflow.EUNAUTHORIZED, "invalid token", cause)
}

func (v *Verifier) checkClaims(payload []byte, now time.Time) (Token, error) {
	c, err := parseClaims(payload)
	if err != nil {
		return Token{}, unauthorized(fmt.Errorf("claims: %w", err))
	}
	if v.needsRaw {
		c.raw = payload
	}
	if err := v.checkIssuer(&c); err != nil {
		return Token{}, unauthorized(err)
	}
	// Before the audience: an ID token is refused with a message that
	// says what to send instead, whatever its aud.
	kind := c.kind()
	if kind == kindIDToken && !v.cfg.InsecureAcceptIDTokens {
		return Token{}, idflow.WrapError(idflow.EUNAUTHORIZED, "send an access token for "+v.cfg.Audiences[0]+", not an ID token", ErrIDToken)
	}
	aud := v.matchAudiences(c.Aud)
	if len(aud) == 0 {
		return Token{}, unauthorized(errors.New("audience not accepted"))
	}
	if c.Exp == nil {
		return Token{}, unauthorized(errors.New("exp missing"))
	}
	leeway := v.cfg.Leeway
	if !now.Before(c.Exp.Add(leeway)) {
		return Token{}, idflow.WrapError(idflow.EUNAUTHORIZED, "token expired", ErrTokenExpired)
	}
	if c.Nbf != nil && now.Add(leeway).Before(c.Nbf.Time) {
		return Token{}, unauthorized(errors.New("not valid yet (nbf)"))
	}
	if c.Iat != nil && now.Add(leeway).Before(c.Iat.Time) {
		return Token{}, unauthorized(errors.New("issued in the future (iat)"))
	}
	if v.multiTen || len(v.tenantSet) > 0 {
		if !v.tenantSet[c.Tid] {
			return Token{}, unauthorized(errors.New("tenant not allowed"))
		}
	}
	p := idflow.Principal{
		TenantID:      c.Tid,
		Email:         firstNonEmpty(c.PreferredUsername, c.Upn, c.Email),
		Name:          c.Name,
		Roles:         nonNil(c.Roles),
		Groups:        nonNil(c.Groups),
		GroupsOverage: c.groupsOverage(),
		Scopes:        nonNil(c.scopes()),
		Issuer:        c.Iss,
		AuthMethod:    v.method,
		ClientID:      c.clientID(),
		ExpiresAt:     c.Exp.Time,
	}
	if kind == kindApp {
		p.Kind = idflow.KindApp
		p.UserID = firstNonEmpty(c.Oid, c.Sub, p.ClientID)
		if p.UserID == "" {
			return Token{}, unauthorized(errors.New("app token without subject"))
		}
		if err := checkUserID(p.UserID); err != nil {
			return Token{}, userIDError("the token", err)
		}
		return Token{Principal: p, Audiences: aud}, nil
	}
	p.Kind = idflow.KindUser
	names := v.cfg.UserClaims
	if len(names) == 0 {
		names = []string{"sub"}
		if c.entraIss {
			names = []string{"oid"}
		}
	}
	// The first claim present names the user; one present but malformed is
	// refused, never skipped for the next.
	for _, name := range names {
		if id := c.stringClaim(name); id != "" {
			if err := checkUserID(id); err != nil {
				return Token{}, userIDError("the token's "+name+" claim", err)
			}
			p.UserID = id
			break
		}
	}
	if p.UserID == "" {
		return Token{}, unauthorized(errors.New("no user claim"))
	}
	if v.cfg.RequiredScope != "" && !p.HasScope(v.cfg.RequiredScope) {
		return Token{}, idflow.WrapError(idflow.EFORBIDDEN, "the token lacks the required scope "+v.cfg.RequiredScope, ErrInsufficientScope)
	}
	return Token{Principal: p, Audiences: aud}, nil
}

// acceptedIssuers expands each {tenantid} template for every allowed
// tenant, so that checking iss is one map lookup (every uncached request
// pays for it) and whether it is Entra's is known in advance. An exact
// issuer wins over an expansion that happens to spell the same.
func acceptedIssuers(issuers, tenants []string) map[string]acceptedIssuer {
	m := map[string]acceptedIssuer{}
	for _, tmpl := range issuers {
		if !strings.Contains(tmpl, TenantPlaceholder) {
			continue
		}
		for _, tid := range tenants {
			if tid != "" {
				iss := strings.ReplaceAll(tmpl, TenantPlaceholder, tid)
				m[iss] = acceptedIssuer{tid: tid, entra: EntraIssuer(iss)}
			}
		}
	}
	for _, iss := range issuers {
		if !strings.Contains(iss, TenantPlaceholder) {
			m[iss] = acceptedIssuer{entra: EntraIssuer(iss)}
		}
	}
	return m
}

// checkIssuer accepts iss exactly as configured, or a template expanded
// with the token's own tid (which must be allowed); it notes whether the
// issuer is Entra's.
func (v *Verifier) checkIssuer(c *claims) error {
	a, ok := v.issuers[c.Iss]
	if !ok || a.tid != "" && a.tid != c.Tid {
		return errors.New("issuer not accepted")
	}
	c.entraIss = a.entra
	return nil
}

func (v *Verifier) matchAudiences(aud []string) []string {
	var out []string
	for _, a := range aud {
		if a != "" && slices.Contains(v.cfg.Audiences, a) {
			out = append(out, a)
		}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// NewAssertionVerifier verifies a trusted proxy's signed identity header:
// iss must be issuer, aud must be audience, the user id is sub.
func NewAssertionVerifier(issuer, audience string, keys KeySet) (*Verifier, error) {
	v, err := NewVerifier(VerifierConfig{Issuers: []string{issuer}, Audiences: []string{audience}, UserClaims: []string{"sub"}}, keys)
	if err != nil {
		return nil, err
	}
	v.method = idflow.AuthProxyAssertion
	return v, nil
}

// AsSession is the Principal of a browser session whose stored access token
// verified as t.
func (t Token) AsSession() idflow.Principal {
	p := t.Principal
	p.AuthMethod = idflow.AuthSession
	return p
}
