package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{s.PublicJWK()}}
}

// KeySet verifies what this signer signed.
func (s *Signer) KeySet() *StaticKeySet { return NewStaticKeySet(s.PublicJWK()) }

// Issuer is the iss of every assertion.
func (s *Signer) Issuer() string { return s.issuer }

// SignAssertion returns a compact JWT that states p's identity to audience.
func (s *Signer) SignAssertion(p idflow.Principal, audience string) (string, error) {
	now := s.now()
	exp := now.Add(AssertionLifetime)
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
	return s.Sign(c)
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
