package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/idflow/idflow"
)

// AssertionLifetime is how long an X-Idflow-Assertion is valid.
const AssertionLifetime = 60 * time.Second

// Signer signs short-lived identity assertions (ES256).
type Signer struct {
	key    *ecdsa.PrivateKey
	kid    string
	signer jose.Signer
	issuer string
	now    func() time.Time
	// published are other keys of idflow served in JWKS (AlsoPublish).
	published []jose.JSONWebKey
}

// NewSigner returns a Signer for key, naming issuer as iss.
func NewSigner(key *ecdsa.PrivateKey, issuer string) (*Signer, error) {
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("assertion key: %w", err)
	}
	sum := sha256.Sum256(der)
	kid := base64.RawURLEncoding.EncodeToString(sum[:12])
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("assertion signer: %w", err)
	}
	return &Signer{key: key, kid: kid, signer: s, issuer: issuer, now: time.Now}, nil
}

// PublicJWK is the verification key.
func (s *Signer) PublicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &s.key.PublicKey, KeyID: s.kid, Algorithm: string(jose.ES256), Use: "sig"}
}

// JWKS is the JSON Web Key Set served at /.well-known/idflow/jwks.json.
func (s *Signer) JWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey{s.PublicJWK()}, s.published...)}
}

// AlsoPublish adds the verification key of another of idflow's signers
// (the MCP access-token signer) to JWKS. Call it before serving.
func (s *Signer) AlsoPublish(other *Signer) { s.published = append(s.published, other.PublicJWK()) }

// DeriveECKey derives a P-256 key for purpose from parent, so that a
// second key (signing idflow's MCP access tokens) is shared by every
// replica that shares the parent (IDFLOW_ASSERTION_KEY), and never is the
// parent: what one signs, the other's key never verifies.
func DeriveECKey(parent *ecdsa.PrivateKey, purpose string) (*ecdsa.PrivateKey, error) {
	secret, err := parent.Bytes()
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	for i := byte(0); i < 8; i++ { // a seed not below the group order is rare (about 2^-32); try the next
		seed, err := hkdf.Key(sha256.New, secret, []byte{i}, "idflow "+purpose, 32)
		if err != nil {
			return nil, fmt.Errorf("derive key: %w", err)
		}
		if k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), seed); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("derive key: no valid seed")
}

// KeySet verifies what this signer signed.
func (s *Signer) KeySet() *StaticKeySet { return NewStaticKeySet(s.PublicJWK()) }

// Issuer is the iss of every assertion.
func (s *Signer) Issuer() string { return s.issuer }

// SignAssertion returns a compact JWT that states p's identity to audience.
func (s *Signer) SignAssertion(p idflow.Principal, audience string) (string, error) {
	a, _, _, err := s.signAssertion(p, audience)
	return a, err
}

// signAssertion is SignAssertion, also telling when the assertion was
// issued and when it expires.
func (s *Signer) signAssertion(p idflow.Principal, audience string) (jwt string, iat, exp time.Time, err error) {
	now := s.now()
	exp = now.Add(AssertionLifetime)
	if !p.ExpiresAt.IsZero() && p.ExpiresAt.Before(exp) {
		exp = p.ExpiresAt
	}
	c := map[string]any{
		"iss": s.issuer, "aud": audience, "sub": p.UserID,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": exp.Unix(),
		"tid": p.TenantID, "email": p.Email, "name": p.Name,
		"roles": p.Roles, "groups": p.Groups, "idtyp": string(p.Kind),
		"jti": idflow.NewID(""),
	}
	jwt, err = s.Sign(c)
	return jwt, now, exp, err
}

// cachedAssertion is an assertion kept with its bearer token's entry in the
// verified-token cache.
type cachedAssertion struct {
	signer   *Signer
	audience string
	jwt      string
	renew    time.Time // from then on, a new one is signed
}

// Assertion returns an X-Idflow-Assertion that s signs for p, the Principal
// that Authenticate returned for r, with audience. For a bearer token it is
// signed once and kept with the token's entry in the verified-token cache
// until the last fifth of its lifetime (12 of 60 seconds, or less when the
// token itself expires sooner), so that a proxy asking about the same token
// again gets the same assertion and no request leaves with one about to
// expire. The assertion goes when the entry goes: at the token's expiry, on
// eviction, and with any revocation that drops or refuses the token (the
// request is refused before it gets here). Other credentials — a session
// cookie, a proxy's headers — get a new assertion every time.
//
// The assertion's jti therefore names the assertion, not the request: a
// downstream must not treat it as a one-time nonce.
func (a *Authenticator) Assertion(r *http.Request, p idflow.Principal, s *Signer, audience string) (string, error) {
	v := a.bearer
	if p.AuthMethod != idflow.AuthBearer || v == nil || v.cache == nil {
		return s.SignAssertion(p, audience)
	}
	raw, ok := authorizationBearer(r)
	if !ok {
		return s.SignAssertion(p, audience)
	}
	e := v.cache.entry(tokenDigest(raw), v.cfg.Now())
	// The entry must be the one p was read from; anything else (evicted
	// meanwhile, a token from elsewhere) gets a fresh, uncached assertion.
	if e == nil || !sameIdentity(e.tok.Principal, p) {
		return s.SignAssertion(p, audience)
	}
	now := s.now()
	if c := e.assertion.Load(); c != nil && c.signer == s && c.audience == audience && now.Before(c.renew) {
		return c.jwt, nil
	}
	jwt, iat, exp, err := s.signAssertion(p, audience)
	if err != nil {
		return "", err
	}
	e.assertion.Store(&cachedAssertion{signer: s, audience: audience, jwt: jwt, renew: exp.Add(-exp.Sub(iat) / 5)})
	return jwt, nil
}

// sameIdentity reports whether a and b state the same identity, claim for
// claim, as an assertion would carry it.
func sameIdentity(a, b idflow.Principal) bool {
	return a.UserID == b.UserID && a.TenantID == b.TenantID && a.Issuer == b.Issuer &&
		a.Email == b.Email && a.Name == b.Name && a.Kind == b.Kind && a.AuthMethod == b.AuthMethod &&
		a.ExpiresAt.Equal(b.ExpiresAt) && slices.Equal(a.Roles, b.Roles) && slices.Equal(a.Groups, b.Groups)
}

// Sign signs arbitrary claims.
func (s *Signer) Sign(claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("assertion claims: %w", err)
	}
	jws, err := s.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("assertion sign: %w", err)
	}
	return jws.CompactSerialize()
}

// LoadOrCreateECKey reads a PKCS#8 PEM EC key from path, or creates one
// (mode 0600) when the file does not exist.
func LoadOrCreateECKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return ParseECKey(b)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read key: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("key dir: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	return key, nil
}

// ParseECKey parses a PKCS#8 EC private key, PEM or base64 DER.
func ParseECKey(b []byte) (*ecdsa.PrivateKey, error) {
	der := b
	if block, _ := pem.Decode(b); block != nil {
		der = block.Bytes
	} else if d, err := base64.StdEncoding.DecodeString(string(b)); err == nil {
		der = d
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("parse key: not an EC key")
	}
	return ec, nil
}
