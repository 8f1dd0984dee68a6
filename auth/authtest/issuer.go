package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DefaultAudience is the aud of tokens built by the Issuer's claim helpers
// unless WithAudience says otherwise.
const DefaultAudience = "api://idflow-test"

// Entra ID issuer templates ({tenantid} is replaced by the token's tid).
const (
	EntraV1IssuerTemplate = "https://sts.windows.net/{tenantid}/"
	EntraV2IssuerTemplate = "https://login.microsoftonline.com/{tenantid}/v2.0"
)

// Default Entra identifiers used when an EntraUser or EntraApp leaves them
// empty. They are fixed GUIDs so that failures are easy to read.
const (
	DefaultTenantID = "6f1a5c1e-0d2b-4e7a-9b1c-3a5d7e9f0a11"
	DefaultClientID = "c0ffee00-1111-4222-8333-444455556666"
)

// Key is a signing key of a test issuer (or of an attacker).
type Key struct {
	KID    string
	Alg    jose.SignatureAlgorithm
	Signer crypto.Signer // *rsa.PrivateKey, *ecdsa.PrivateKey or ed25519.PrivateKey
}

// Public returns the public half of k.
func (k *Key) Public() crypto.PublicKey { return k.Signer.Public() }

// JWK is the public JWK of k, as a JWKS publishes it (kid, alg, use=sig).
func (k *Key) JWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Signer.Public(), KeyID: k.KID, Algorithm: string(k.Alg), Use: "sig"}
}

// NewKey generates a key for alg: RS*/PS* → RSA 2048, ES256/384/512 → the
// matching NIST curve, EdDSA → Ed25519.
func NewKey(t testing.TB, alg jose.SignatureAlgorithm, kid string) *Key {
	t.Helper()
	var (
		s   crypto.Signer
		err error
	)
	switch alg {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
		s, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		s, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.ES512:
		s, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case jose.EdDSA:
		_, s, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("authtest: no key type for alg %q", alg)
	}
	if err != nil {
		t.Fatalf("authtest: generate %s key: %v", alg, err)
	}
	return &Key{KID: kid, Alg: alg, Signer: s}
}

// Claims is a JWT claims set.
type Claims map[string]any

// With returns a copy of c with name set to v.
func (c Claims) With(name string, v any) Claims {
	out := maps.Clone(c)
	if out == nil {
		out = Claims{}
	}
	out[name] = v
	return out
}

// Without returns a copy of c without the named claims.
func (c Claims) Without(names ...string) Claims {
	out := maps.Clone(c)
	for _, n := range names {
		delete(out, n)
	}
	return out
}

// Option configures NewIssuer.
type Option func(*Issuer)

// WithIssuerPath sets the issuer the discovery document announces to the
// server URL + path. The path may contain {tenantid}, as Entra's
// multi-tenant metadata does (e.g. "/{tenantid}/v2.0").
func WithIssuerPath(path string) Option { return func(i *Issuer) { i.issuerPath = path } }

// WithSignIn serves a browser sign-in (authorization code, for a client
// such as idflow's browser login): /authorize takes the user's login from
// its form (no password) and /token answers an access token of claims(login)
// and an ID token for the client. claims must set what every access token
// of the test carries besides iss, aud, sub and times (tid, name, roles…).
func WithSignIn(claims func(login string) Claims) Option {
	return func(i *Issuer) { i.signIn = claims }
}

// WithAudience sets the aud of tokens built by the claim helpers.
func WithAudience(aud string) Option { return func(i *Issuer) { i.audience = aud } }

// WithClock sets the clock used for iat, nbf and exp.
func WithClock(now func() time.Time) Option { return func(i *Issuer) { i.now = now } }

// WithLifetime sets the lifetime of tokens built by the claim helpers
// (default one hour).
func WithLifetime(d time.Duration) Option { return func(i *Issuer) { i.lifetime = d } }

// WithKeys replaces the default keys. The first key is the one Sign uses
// unless told otherwise.
func WithKeys(keys ...*Key) Option { return func(i *Issuer) { i.keys = slices.Clone(keys) } }

// WithEntraIssuers sets the iss templates of the Entra v1.0 and v2.0 claim
// helpers (defaults EntraV1IssuerTemplate and EntraV2IssuerTemplate). An
// empty argument keeps the default.
func WithEntraIssuers(v1, v2 string) Option {
	return func(i *Issuer) {
		if v1 != "" {
			i.entraV1 = v1
		}
		if v2 != "" {
			i.entraV2 = v2
		}
	}
}

// Issuer is a test OpenID provider: an httptest server with discovery and a
// JWKS, and the private keys to sign tokens it publishes.
type Issuer struct {
	t          testing.TB
	srv        *httptest.Server
	issuerPath string
	audience   string
	lifetime   time.Duration
	now        func() time.Time
	entraV1    string
	entraV2    string
	serial     atomic.Int64

	mu         sync.Mutex
	keys       []*Key            // published, in order
	retired    []*Key            // removed from the JWKS, still usable for signing
	rawJWKs    []json.RawMessage // published verbatim after keys
	jwksStatus int               // 0: healthy; otherwise the status of every JWKS answer

	jwksRequests      atomic.Int64
	discoveryRequests atomic.Int64

	signIn func(login string) Claims // nil: no /authorize or /token
	codes  map[string]signInCode     // under mu
}

// signInCode is what an authorization code of the sign-in stands for.
type signInCode struct {
	login, clientID, nonce, redirectURI, challenge string
}

// NewIssuer starts a test issuer with three keys: "rsa-1" (RS256), "ec-1"
// (ES256) and "ed-1" (EdDSA). The server is closed when the test ends.
func NewIssuer(t testing.TB, opts ...Option) *Issuer {
	t.Helper()
	i := &Issuer{t: t, audience: DefaultAudience, lifetime: time.Hour, now: time.Now,
		entraV1: EntraV1IssuerTemplate, entraV2: EntraV2IssuerTemplate}
	for _, o := range opts {
		o(i)
	}
	if i.keys == nil {
		i.keys = []*Key{NewKey(t, jose.RS256, "rsa-1"), NewKey(t, jose.ES256, "ec-1"), NewKey(t, jose.EdDSA, "ed-1")}
	}
	// Assigned before the server starts, so that handlers read i.srv
	// after it was written (the race detector cannot see that requests
	// only arrive once the URL is known).
	i.srv = httptest.NewUnstartedServer(http.HandlerFunc(i.serve))
	i.srv.Start()
	t.Cleanup(i.srv.Close)
	return i
}

// JWKSPath is where the issuer serves its key set.
const JWKSPath = "/keys"

func (i *Issuer) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == JWKSPath:
		i.jwksRequests.Add(1)
		i.mu.Lock()
		status := i.jwksStatus
		doc := i.jwksLocked()
		i.mu.Unlock()
		if status != 0 && status != http.StatusOK {
			http.Error(w, "jwks outage", status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	case strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration"):
		i.discoveryRequests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                i.Issuer(),
			"jwks_uri":                              i.JWKSURL(),
			"authorization_endpoint":                i.URL() + "/authorize",
			"token_endpoint":                        i.URL() + "/token",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"pairwise"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256", "EdDSA"},
			"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		})
	case r.URL.Path == "/authorize" && i.signIn != nil:
		i.authorize(w, r)
	case r.URL.Path == "/token" && i.signIn != nil:
		i.token(w, r)
	default:
		http.NotFound(w, r)
	}
}

// authorize signs the form's login in at once and sends the browser back
// to redirect_uri with a code.
func (i *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	q := r.Form
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || q.Get("login") == "" || q.Get("client_id") == "" || q.Get("code_challenge_method") != "S256" {
		http.Error(w, "authorize: login, client_id, redirect_uri and an S256 code_challenge are required", http.StatusBadRequest)
		return
	}
	code := fmt.Sprintf("code-%d", i.serial.Add(1))
	i.mu.Lock()
	if i.codes == nil {
		i.codes = map[string]signInCode{}
	}
	i.codes[code] = signInCode{login: q.Get("login"), clientID: q.Get("client_id"), nonce: q.Get("nonce"),
		redirectURI: q.Get("redirect_uri"), challenge: q.Get("code_challenge")}
	i.mu.Unlock()
	back := redirect.Query()
	back.Set("code", code)
	back.Set("state", q.Get("state"))
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// token redeems a code once (PKCE checked) for an access and an ID token.
func (i *Issuer) token(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	i.mu.Lock()
	c, ok := i.codes[r.PostForm.Get("code")]
	delete(i.codes, r.PostForm.Get("code"))
	i.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if !ok || r.PostForm.Get("redirect_uri") != c.redirectURI ||
		base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
		return
	}
	access := i.OIDC(c.login)
	for k, v := range i.signIn(c.login) {
		access[k] = v
	}
	id := i.OIDC(c.login).With("aud", c.clientID).With("nonce", c.nonce)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": i.Sign(access), "id_token": i.Sign(id),
		"token_type": "Bearer", "expires_in": int(i.lifetime.Seconds())})
}

func (i *Issuer) jwksLocked() []byte {
	entries := make([]json.RawMessage, 0, len(i.keys)+len(i.rawJWKs))
	for _, k := range i.keys {
		b, err := json.Marshal(k.JWK())
		if err != nil {
			panic(fmt.Sprintf("authtest: marshal jwk %s: %v", k.KID, err))
		}
		entries = append(entries, b)
	}
	entries = append(entries, i.rawJWKs...)
	b, err := json.Marshal(map[string]any{"keys": entries})
	if err != nil {
		panic(fmt.Sprintf("authtest: marshal jwks: %v", err))
	}
	return b
}

// URL is the server's base URL.
func (i *Issuer) URL() string { return i.srv.URL }

// Issuer is the issuer the discovery document announces: URL() plus the
// WithIssuerPath path, {tenantid} left in place.
func (i *Issuer) Issuer() string { return i.srv.URL + i.issuerPath }

// IssuerFor is Issuer() with {tenantid} (or {tid}) replaced by tid.
func (i *Issuer) IssuerFor(tid string) string { return ExpandIssuer(i.Issuer(), tid) }

// ExpandIssuer replaces {tenantid} and {tid} in template with tid.
func ExpandIssuer(template, tid string) string {
	return strings.ReplaceAll(strings.ReplaceAll(template, "{tenantid}", tid), "{tid}", tid)
}

// JWKSURL is where the key set is served.
func (i *Issuer) JWKSURL() string { return i.srv.URL + JWKSPath }

// Audience is the aud the claim helpers use.
func (i *Issuer) Audience() string { return i.audience }

// Now is the issuer's clock.
func (i *Issuer) Now() time.Time { return i.now() }

// Close stops the server (the JWKS becomes unreachable).
func (i *Issuer) Close() { i.srv.Close() }

// JWKSRequests counts requests to the JWKS endpoint, failed ones included.
func (i *Issuer) JWKSRequests() int64 { return i.jwksRequests.Load() }

// DiscoveryRequests counts requests for the discovery document.
func (i *Issuer) DiscoveryRequests() int64 { return i.discoveryRequests.Load() }

// SetJWKSStatus makes every JWKS answer fail with status (an outage); 0 or
// 200 restores it.
func (i *Issuer) SetJWKSStatus(status int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.jwksStatus = status
}

// Outage makes the JWKS endpoint answer 500 (on) or serve keys again (off).
func (i *Issuer) Outage(on bool) {
	if on {
		i.SetJWKSStatus(http.StatusInternalServerError)
	} else {
		i.SetJWKSStatus(0)
	}
}

// JWKS returns the key set document as it is currently served.
func (i *Issuer) JWKS() []byte {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.jwksLocked()
}

// Keys returns the published keys.
func (i *Issuer) Keys() []*Key {
	i.mu.Lock()
	defer i.mu.Unlock()
	return slices.Clone(i.keys)
}

// PublicJWKs returns the published keys as public JWKs (for a static key set).
func (i *Issuer) PublicJWKs() []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range i.Keys() {
		out = append(out, k.JWK())
	}
	return out
}

// Key returns the key with kid, published or retired.
func (i *Issuer) Key(kid string) *Key {
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, k := range append(slices.Clone(i.keys), i.retired...) {
		if k.KID == kid {
			return k
		}
	}
	i.t.Fatalf("authtest: no key %q", kid)
	return nil
}

// RSA returns the first published RSA key.
func (i *Issuer) RSA() *Key {
	return i.firstOf(func(s crypto.Signer) bool { _, ok := s.(*rsa.PrivateKey); return ok })
}

// EC returns the first published ECDSA key.
func (i *Issuer) EC() *Key {
	return i.firstOf(func(s crypto.Signer) bool { _, ok := s.(*ecdsa.PrivateKey); return ok })
}

// Ed returns the first published Ed25519 key.
func (i *Issuer) Ed() *Key {
	return i.firstOf(func(s crypto.Signer) bool { _, ok := s.(ed25519.PrivateKey); return ok })
}

func (i *Issuer) firstOf(match func(crypto.Signer) bool) *Key {
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, k := range i.keys {
		if match(k.Signer) {
			return k
		}
	}
	i.t.Fatalf("authtest: no published key of that type")
	return nil
}

// AddKey publishes k.
func (i *Issuer) AddKey(k *Key) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = append(i.keys, k)
}

// RemoveKey stops publishing the key with kid; it can still sign (retired).
func (i *Issuer) RemoveKey(kid string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = slices.DeleteFunc(i.keys, func(k *Key) bool {
		if k.KID == kid {
			i.retired = append(i.retired, k)
			return true
		}
		return false
	})
}

// Rotate generates a new key with alg (kid "<alg>-r<n>"), publishes it, and
// stops publishing old. It returns the new key.
func (i *Issuer) Rotate(old *Key, alg jose.SignatureAlgorithm) *Key {
	k := NewKey(i.t, alg, fmt.Sprintf("%s-r%d", strings.ToLower(string(alg)), i.serial.Add(1)))
	i.AddKey(k)
	if old != nil {
		i.RemoveKey(old.KID)
	}
	return k
}

// AddRawJWK publishes raw verbatim as one more entry of the key set, e.g.
// an "oct" key or a private key that a verifier must ignore.
func (i *Issuer) AddRawJWK(raw json.RawMessage) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.rawJWKs = append(i.rawJWKs, raw)
}

// SetRawJWKS replaces everything the key set publishes with raw entries.
func (i *Issuer) SetRawJWKS(raw ...json.RawMessage) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.retired = append(i.retired, i.keys...)
	i.keys = nil
	i.rawJWKs = slices.Clone(raw)
}

// SignOption changes how a token is signed.
type SignOption func(*signSpec)

type signSpec struct {
	key       *Key
	header    map[string]any
	sig       []byte
	sigSet    bool
	tamper    func(payload []byte) []byte
	noKID     bool
	hmacKey   []byte
	hmacAlg   string
	rawHeader []byte
}

// WithKey signs with k (default: the first published key).
func WithKey(k *Key) SignOption { return func(s *signSpec) { s.key = k } }

// WithKID sets the header's kid to kid, whatever key signs.
func WithKID(kid string) SignOption { return func(s *signSpec) { s.header["kid"] = kid } }

// WithoutKID leaves kid out of the header.
func WithoutKID() SignOption { return func(s *signSpec) { s.noKID = true } }

// WithAlg sets the header's alg. When alg fits the key's type (RS384 for an
// RSA key, say) the signature is made with it; otherwise the signature is
// made with the key's own algorithm and only the header lies.
func WithAlg(alg string) SignOption { return func(s *signSpec) { s.header["alg"] = alg } }

// WithHeader sets (or, with a nil value, removes) a header field: jwk, jku,
// x5u, crit, typ, anything.
func WithHeader(name string, v any) SignOption {
	return func(s *signSpec) {
		s.header[name] = v
	}
}

// WithRawHeader uses raw, verbatim, as the protected header (alg and kid
// are then whatever raw says; the key still signs).
func WithRawHeader(raw []byte) SignOption { return func(s *signSpec) { s.rawHeader = raw } }

// WithSignature replaces the signature bytes.
func WithSignature(sig []byte) SignOption {
	return func(s *signSpec) { s.sig, s.sigSet = sig, true }
}

// WithTamperedPayload signs the payload, then replaces it by tamper(payload)
// in the token: the signature no longer covers what the token says.
func WithTamperedPayload(tamper func(payload []byte) []byte) SignOption {
	return func(s *signSpec) { s.tamper = tamper }
}

// WithHMAC signs with HMAC (alg HS256, HS384 or HS512) under secret instead
// of a key: the "public key as a shared secret" attack.
func WithHMAC(alg string, secret []byte) SignOption {
	return func(s *signSpec) { s.hmacAlg, s.hmacKey = alg, secret; s.header["alg"] = alg }
}

// Sign returns a compact JWS over claims (a Claims, any JSON-marshalable
// value, or a []byte used verbatim as the payload), signed by the issuer's
// first key unless options say otherwise.
func (i *Issuer) Sign(claims any, opts ...SignOption) string {
	i.t.Helper()
	spec := &signSpec{header: map[string]any{}}
	for _, o := range opts {
		o(spec)
	}
	if spec.key == nil && spec.hmacKey == nil {
		ks := i.Keys()
		if len(ks) == 0 {
			i.t.Fatalf("authtest: no published key to sign with")
		}
		spec.key = ks[0]
	}
	tok, err := sign(spec, claims)
	if err != nil {
		i.t.Fatalf("authtest: sign: %v", err)
	}
	return tok
}

// SignWith signs claims with a key that need not belong to any issuer (an
// attacker's key, say).
func SignWith(t testing.TB, k *Key, claims any, opts ...SignOption) string {
	t.Helper()
	spec := &signSpec{header: map[string]any{}, key: k}
	for _, o := range opts {
		o(spec)
	}
	tok, err := sign(spec, claims)
	if err != nil {
		t.Fatalf("authtest: sign: %v", err)
	}
	return tok
}

func sign(spec *signSpec, claims any) (string, error) {
	var payload []byte
	switch c := claims.(type) {
	case []byte:
		payload = c
	case string:
		payload = []byte(c)
	default:
		b, err := json.Marshal(claims)
		if err != nil {
			return "", fmt.Errorf("marshal claims: %w", err)
		}
		payload = b
	}
	hdr := map[string]any{"typ": "JWT"}
	if spec.key != nil {
		hdr["alg"] = string(spec.key.Alg)
		hdr["kid"] = spec.key.KID
	}
	for k, v := range spec.header {
		if v == nil {
			delete(hdr, k)
		} else {
			hdr[k] = v
		}
	}
	if spec.noKID {
		delete(hdr, "kid")
	}
	hb := spec.rawHeader
	if hb == nil {
		var err error
		if hb, err = json.Marshal(hdr); err != nil {
			return "", fmt.Errorf("marshal header: %w", err)
		}
	}
	input := b64(hb) + "." + b64(payload)
	sig := spec.sig
	if !spec.sigSet {
		var err error
		if spec.hmacKey != nil {
			sig, err = hmacSign(spec.hmacAlg, spec.hmacKey, []byte(input))
		} else {
			alg, _ := hdr["alg"].(string)
			sig, err = signInput(spec.key, alg, []byte(input))
		}
		if err != nil {
			return "", err
		}
	}
	if spec.tamper != nil {
		input = b64(hb) + "." + b64(spec.tamper(payload))
	}
	return input + "." + b64(sig), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Compact joins header, payload and signature into a compact JWS without
// any signing: header and payload are JSON-marshaled unless they are
// []byte; sig is used as is (nil gives an empty signature part).
func Compact(header, payload any, sig []byte) string {
	enc := func(v any) string {
		if b, ok := v.([]byte); ok {
			return b64(b)
		}
		b, err := json.Marshal(v)
		if err != nil {
			panic(fmt.Sprintf("authtest: compact: %v", err))
		}
		return b64(b)
	}
	return enc(header) + "." + enc(payload) + "." + b64(sig)
}

func hashFor(alg string) (crypto.Hash, func() hash.Hash) {
	switch alg[len(alg)-3:] {
	case "384":
		return crypto.SHA384, sha512.New384
	case "512":
		return crypto.SHA512, sha512.New
	}
	return crypto.SHA256, sha256.New
}

func hmacSign(alg string, secret, input []byte) ([]byte, error) {
	switch alg {
	case "HS256", "HS384", "HS512":
	default:
		return nil, fmt.Errorf("not an HMAC alg: %q", alg)
	}
	_, h := hashFor(alg)
	m := hmac.New(h, secret)
	m.Write(input)
	return m.Sum(nil), nil
}

// signInput signs input with k, using alg when it fits k's type and k.Alg
// otherwise.
func signInput(k *Key, alg string, input []byte) ([]byte, error) {
	if k == nil {
		return nil, fmt.Errorf("no key")
	}
	if !fits(k, alg) {
		alg = string(k.Alg)
	}
	switch key := k.Signer.(type) {
	case *rsa.PrivateKey:
		h, _ := hashFor(alg)
		d := h.New()
		d.Write(input)
		if strings.HasPrefix(alg, "PS") {
			return rsa.SignPSS(rand.Reader, key, h, d.Sum(nil), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.SignPKCS1v15(rand.Reader, key, h, d.Sum(nil))
	case *ecdsa.PrivateKey:
		h, _ := hashFor(alg)
		d := h.New()
		d.Write(input)
		r, s, err := ecdsa.Sign(rand.Reader, key, d.Sum(nil))
		if err != nil {
			return nil, err
		}
		size := (key.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out, nil
	case ed25519.PrivateKey:
		return ed25519.Sign(key, input), nil
	}
	return nil, fmt.Errorf("unsupported key type %T", k.Signer)
}

func fits(k *Key, alg string) bool {
	switch key := k.Signer.(type) {
	case *rsa.PrivateKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return true
		}
	case *ecdsa.PrivateKey:
		switch key.Curve {
		case elliptic.P256():
			return alg == "ES256"
		case elliptic.P384():
			return alg == "ES384"
		case elliptic.P521():
			return alg == "ES512"
		}
	case ed25519.PrivateKey:
		return alg == "EdDSA"
	}
	return false
}

// Token signs claims with the issuer's first key.
func (i *Issuer) Token(c Claims) string { i.t.Helper(); return i.Sign(c) }

// times returns iat/nbf/exp claims for a token issued now.
func (i *Issuer) times() (iat, nbf, exp int64) {
	now := i.now()
	return now.Unix(), now.Add(-5 * time.Minute).Unix(), now.Add(i.lifetime).Unix()
}

// OIDC returns plain OIDC access-token claims for sub: iss = Issuer(), aud
// = Audience(), iat/nbf/exp from the clock.
func (i *Issuer) OIDC(sub string) Claims {
	iat, nbf, exp := i.times()
	return Claims{"iss": i.Issuer(), "aud": i.audience, "sub": sub, "iat": iat, "nbf": nbf, "exp": exp}
}

// RFC9068 returns claims shaped as an RFC 9068 JWT access token. A user
// token has sub != clientID; an app (client-credentials) token has
// sub == clientID. scope is the space-separated scope claim (omitted when
// empty).
func (i *Issuer) RFC9068(sub, clientID, scope string) Claims {
	iat, _, exp := i.times()
	c := Claims{
		"iss": i.Issuer(), "aud": i.audience, "sub": sub, "client_id": clientID,
		"iat": iat, "exp": exp, "jti": fmt.Sprintf("jti-%d", i.serial.Add(1)),
	}
	if scope != "" {
		c["scope"] = scope
	}
	return c
}

// EntraUser describes a delegated (user) Entra ID access token.
type EntraUser struct {
	TenantID          string   // tid (default DefaultTenantID)
	ObjectID          string   // oid (required)
	Subject           string   // sub, pairwise per app (default derived from oid)
	PreferredUsername string   // v2.0 preferred_username (default UPN)
	UPN               string   // upn (v1.0; v2.0 only as an optional claim)
	Email             string   // optional email claim
	Name              string   // name
	Roles             []string // app roles assigned to the user
	Groups            []string // group object ids
	Scopes            []string // delegated scopes; default ["access_as_user"]
	ClientID          string   // the calling app: azp (v2.0) / appid (v1.0)
	Audience          string   // aud (default the issuer's audience)
	Issuer            string   // iss template (default per version); {tenantid} is expanded
	IDTyp             bool     // add the optional idtyp=user claim
}

// EntraApp describes an app-only (client credentials) Entra ID access token.
type EntraApp struct {
	TenantID string   // tid (default DefaultTenantID)
	ObjectID string   // oid of the service principal (default derived)
	ClientID string   // azp (v2.0) / appid (v1.0); default DefaultClientID
	Roles    []string // application permissions
	Audience string
	Issuer   string
	IDTyp    bool // add the optional idtyp=app claim
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func pairwise(oid, clientID string) string {
	sum := sha256.Sum256([]byte(oid + "|" + clientID))
	return base64.RawURLEncoding.EncodeToString(sum[:24])
}

func (i *Issuer) entraCommon(ver, tmpl, tid, aud string) Claims {
	iat, nbf, exp := i.times()
	return Claims{
		"aud": orDefault(aud, i.audience),
		"iss": ExpandIssuer(tmpl, tid),
		"iat": iat, "nbf": nbf, "exp": exp,
		"aio": "AWQAm/8TAAAA" + fmt.Sprint(i.serial.Add(1)),
		"rh":  "0.AAAA-rh.",
		"tid": tid,
		"uti": fmt.Sprintf("uti-%d", i.serial.Add(1)),
		"ver": ver,
	}
}

func (u EntraUser) defaults() EntraUser {
	u.TenantID = orDefault(u.TenantID, DefaultTenantID)
	u.ClientID = orDefault(u.ClientID, DefaultClientID)
	u.Subject = orDefault(u.Subject, pairwise(u.ObjectID, u.ClientID))
	if u.Scopes == nil {
		u.Scopes = []string{"access_as_user"}
	}
	return u
}

// EntraV2User returns claims shaped like an Entra ID v2.0 delegated access
// token (iss https://login.microsoftonline.com/{tid}/v2.0 by default).
func (i *Issuer) EntraV2User(u EntraUser) Claims {
	u = u.defaults()
	c := i.entraCommon("2.0", orDefault(u.Issuer, i.entraV2), u.TenantID, u.Audience)
	c["azp"] = u.ClientID
	c["azpacr"] = "0"
	c["oid"] = u.ObjectID
	c["sub"] = u.Subject
	c["scp"] = strings.Join(u.Scopes, " ")
	if u.Name != "" {
		c["name"] = u.Name
	}
	if pu := orDefault(u.PreferredUsername, u.UPN); pu != "" {
		c["preferred_username"] = pu
	}
	if u.UPN != "" {
		c["upn"] = u.UPN // optional claim in v2.0
	}
	if u.Email != "" {
		c["email"] = u.Email
	}
	if u.Roles != nil {
		c["roles"] = u.Roles
	}
	if u.Groups != nil {
		c["groups"] = u.Groups
	}
	if u.IDTyp {
		c["idtyp"] = "user"
	}
	return c
}

// EntraV1User returns claims shaped like an Entra ID v1.0 delegated access
// token (iss https://sts.windows.net/{tid}/ by default).
func (i *Issuer) EntraV1User(u EntraUser) Claims {
	u = u.defaults()
	c := i.entraCommon("1.0", orDefault(u.Issuer, i.entraV1), u.TenantID, u.Audience)
	c["acr"] = "1"
	c["amr"] = []string{"pwd", "mfa"}
	c["appid"] = u.ClientID
	c["appidacr"] = "0"
	c["ipaddr"] = "203.0.113.7"
	c["oid"] = u.ObjectID
	c["sub"] = u.Subject
	c["scp"] = strings.Join(u.Scopes, " ")
	if u.Name != "" {
		c["name"] = u.Name
		if first, last, ok := strings.Cut(u.Name, " "); ok {
			c["given_name"], c["family_name"] = first, last
		}
	}
	if u.UPN != "" {
		c["upn"] = u.UPN
		c["unique_name"] = u.UPN
	}
	if u.Email != "" {
		c["email"] = u.Email
	}
	if u.Roles != nil {
		c["roles"] = u.Roles
	}
	if u.Groups != nil {
		c["groups"] = u.Groups
	}
	if u.IDTyp {
		c["idtyp"] = "user"
	}
	return c
}

func (a EntraApp) defaults() EntraApp {
	a.TenantID = orDefault(a.TenantID, DefaultTenantID)
	a.ClientID = orDefault(a.ClientID, DefaultClientID)
	a.ObjectID = orDefault(a.ObjectID, "sp-"+pairwise(a.ClientID, a.TenantID)[:16])
	return a
}

// EntraV2App returns claims shaped like an Entra ID v2.0 app-only access
// token: no scp; sub == oid of the service principal; idtyp=app only when
// a.IDTyp (it is an optional claim).
func (i *Issuer) EntraV2App(a EntraApp) Claims {
	a = a.defaults()
	c := i.entraCommon("2.0", orDefault(a.Issuer, i.entraV2), a.TenantID, a.Audience)
	c["azp"] = a.ClientID
	c["azpacr"] = "1"
	c["oid"] = a.ObjectID
	c["sub"] = a.ObjectID
	if a.Roles != nil {
		c["roles"] = a.Roles
	}
	if a.IDTyp {
		c["idtyp"] = "app"
	}
	return c
}

// EntraV1App returns claims shaped like an Entra ID v1.0 app-only access token.
func (i *Issuer) EntraV1App(a EntraApp) Claims {
	a = a.defaults()
	c := i.entraCommon("1.0", orDefault(a.Issuer, i.entraV1), a.TenantID, a.Audience)
	c["appid"] = a.ClientID
	c["appidacr"] = "1"
	c["idp"] = ExpandIssuer(EntraV1IssuerTemplate, a.TenantID)
	c["oid"] = a.ObjectID
	c["sub"] = a.ObjectID
	if a.Roles != nil {
		c["roles"] = a.Roles
	}
	if a.IDTyp {
		c["idtyp"] = "app"
	}
	return c
}

// EntraV2IDToken returns claims shaped like an Entra ID v2.0 ID token for
// u, issued to u.ClientID (its aud unless u.Audience says otherwise): oid,
// sub, tid, preferred_username, name, nonce, but none of scp, azp, appid,
// idtyp — an ID token names no client and grants nothing.
func (i *Issuer) EntraV2IDToken(u EntraUser) Claims {
	u = u.defaults()
	c := i.entraCommon("2.0", orDefault(u.Issuer, i.entraV2), u.TenantID, orDefault(u.Audience, u.ClientID))
	c["oid"] = u.ObjectID
	c["sub"] = u.Subject
	c["nonce"] = fmt.Sprintf("nonce-%d", i.serial.Add(1))
	c["sid"] = fmt.Sprintf("sid-%d", i.serial.Add(1))
	if u.Name != "" {
		c["name"] = u.Name
	}
	if pu := orDefault(u.PreferredUsername, u.UPN); pu != "" {
		c["preferred_username"] = pu
	}
	if u.Roles != nil {
		c["roles"] = u.Roles
	}
	if u.Groups != nil {
		c["groups"] = u.Groups
	}
	return c
}

// EntraV1IDToken returns claims shaped like an Entra ID v1.0 ID token: as
// v2.0, with upn, unique_name and amr, and the sts.windows.net issuer.
func (i *Issuer) EntraV1IDToken(u EntraUser) Claims {
	u = u.defaults()
	c := i.entraCommon("1.0", orDefault(u.Issuer, i.entraV1), u.TenantID, orDefault(u.Audience, u.ClientID))
	c["amr"] = []string{"pwd"}
	c["oid"] = u.ObjectID
	c["sub"] = u.Subject
	c["nonce"] = fmt.Sprintf("nonce-%d", i.serial.Add(1))
	if u.Name != "" {
		c["name"] = u.Name
	}
	if u.UPN != "" {
		c["upn"] = u.UPN
		c["unique_name"] = u.UPN
	}
	if u.Roles != nil {
		c["roles"] = u.Roles
	}
	return c
}

// GroupOverage returns c as Entra issues it when the user is in too many
// groups: no groups claim, and _claim_names/_claim_sources pointing at
// Microsoft Graph.
func GroupOverage(c Claims) Claims {
	out := c.Without("groups")
	tid, _ := c["tid"].(string)
	oid, _ := c["oid"].(string)
	out["_claim_names"] = map[string]any{"groups": "src1"}
	out["_claim_sources"] = map[string]any{"src1": map[string]any{
		"endpoint": "https://graph.windows.net/" + tid + "/users/" + oid + "/getMemberObjects",
	}}
	return out
}
