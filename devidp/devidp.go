// Package devidp is the built-in OpenID issuer of `idflow serve --dev`. It
// knows five users, signs with a key kept in the data dir, and is mounted
// only in dev mode, on loopback.
package devidp

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Path is where the dev issuer is mounted.
const Path = "/dev/idp"

// User is a dev user.
type User struct {
	Login  string
	ID     string
	Tenant string
	Name   string
	Email  string
	Roles  []string
	Groups []string
}

// Users are the dev users (docs/CONFIGURATION.md).
var Users = []User{
	{Login: "alice", ID: "dev-alice", Tenant: "t-one", Name: "Alice Example", Email: "alice@t-one.example", Roles: []string{}, Groups: []string{"engineering"}},
	{Login: "bob", ID: "dev-bob", Tenant: "t-one", Name: "Bob Example", Email: "bob@t-one.example", Roles: []string{}, Groups: []string{"sales"}},
	{Login: "carol", ID: "dev-carol", Tenant: "t-two", Name: "Carol Example", Email: "carol@t-two.example", Roles: []string{}, Groups: []string{"engineering"}},
	{Login: "admin", ID: "dev-admin", Tenant: "t-one", Name: "Admin Example", Email: "admin@t-one.example", Roles: []string{"admin"}, Groups: []string{"engineering", "admins"}},
	// platform administers every tenant: dev mode sets IDFLOW_PLATFORM_ADMIN_ROLE
	// to PlatformAdminRole unless configured otherwise. Its own tenant holds
	// nobody else, so what it reads of t-one and t-two it reads across tenants.
	{Login: "platform", ID: "dev-platform", Tenant: "t-ops", Name: "Platform Admin", Email: "platform@t-ops.example", Roles: []string{PlatformAdminRole}, Groups: []string{"admins"}},
}

// PlatformAdminRole is the role of the dev user "platform".
const PlatformAdminRole = "platform-admin"

// Dev clients.
const (
	PublicClientID = "idflow-dev"     // browser login, CLI: PKCE, no secret
	AppClientID    = "idflow-dev-app" // client_credentials: an app-only caller
	AppClientRole  = "idflow.internal"
	// DownstreamClientID is the confidential client of the dev downstream
	// provider "dev" (downstream.go): idflow connects users to it.
	DownstreamClientID = "idflow-dev-downstream"
)

// Config configures the dev issuer.
type Config struct {
	Issuer        string // public URL + Path
	Audience      string // the API audience of access tokens
	ExtraAudience string // accepted as an RFC 8707 resource (the MCP audience)
	AppSecret     string // client_credentials secret of AppClientID
	KeyFile       string // RSA signing key, created when missing
	Now           func() time.Time

	// Downstream, when its Secret is set, turns on the demo downstream
	// provider: the DownstreamClientID client and /dev/downstream.
	Downstream DownstreamConfig
}

// Issuer is the dev OpenID issuer.
type Issuer struct {
	cfg    Config
	key    *rsa.PrivateKey
	kid    string
	signer jose.Signer

	mu       sync.Mutex
	codes    map[string]authCode
	refresh  map[string]grant
	consents map[string]time.Time
}

type authCode struct {
	grant
	redirectURI string
	challenge   string
	nonce       string
	expires     time.Time
}

type grant struct {
	user     User
	clientID string
	scope    string
	resource string
	ttl      time.Duration
}

// New returns the dev issuer, loading or creating its key.
func New(cfg Config) (*Issuer, error) {
	if cfg.Issuer == "" || cfg.Audience == "" || cfg.KeyFile == "" {
		return nil, errors.New("devidp: issuer, audience and key file are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	key, err := loadOrCreateRSA(cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("devidp: %w", err)
	}
	sum := sha256.Sum256(der)
	kid := base64.RawURLEncoding.EncodeToString(sum[:12])
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("devidp: %w", err)
	}
	return &Issuer{cfg: cfg, key: key, kid: kid, signer: signer,
		codes: map[string]authCode{}, refresh: map[string]grant{}, consents: map[string]time.Time{}}, nil
}

// PublicJWK is the issuer's verification key.
func (i *Issuer) PublicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &i.key.PublicKey, KeyID: i.kid, Algorithm: string(jose.RS256), Use: "sig"}
}

// FindUser returns the dev user with login name.
func FindUser(login string) (User, bool) {
	for _, u := range Users {
		if u.Login == login {
			return u, true
		}
	}
	return User{}, false
}

func loadOrCreateRSA(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		block, _ := pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("devidp: %s holds no PEM key", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("devidp: parse key: %w", err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, errors.New("devidp: key is not RSA")
		}
		return rk, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("devidp: read key: %w", err)
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("devidp: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("devidp: marshal key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("devidp: key dir: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("devidp: write key: %w", err)
	}
	return k, nil
}

func randomToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func pkceS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func constantEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
