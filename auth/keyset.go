package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"golang.org/x/sync/singleflight"
)

// AllowedAlgorithms are the only signature algorithms idflow verifies.
// "none" and every HMAC algorithm are absent on purpose: a public key must
// never double as a shared secret.
var AllowedAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// KeySet verifies a compact JWS and returns its payload. It is the test seam
// between token verification and key retrieval (as in go-oidc, whose
// oidc.KeySet it satisfies).
type KeySet interface {
	VerifySignature(ctx context.Context, jwt string) ([]byte, error)
}

// errUnknownKey is returned when no key in the set matches the token's kid.
var errUnknownKey = errors.New("no matching key")

// RemoteKeySet is a JWKS fetched over HTTP and cached. An unknown kid
// triggers at most one fetch per cooldown, shared by all concurrent callers;
// a failed fetch never evicts the keys already known, so an IdP outage does
// not break tokens that were verifiable before it.
type RemoteKeySet struct {
	url      string
	client   *http.Client
	cooldown time.Duration
	now      func() time.Time
	log      *slog.Logger

	group singleflight.Group

	mu        sync.RWMutex
	keys      map[string]*jose.JSONWebKey // by kid; kid-less keys under "\x00"-prefixed synthetic names
	lastFetch time.Time                   // last attempt, successful or not
	fetches   int64                       // attempts, for tests and metrics

	onFetch func(err error) // monitoring (ObserveFetches); nil: none
}

// DefaultJWKSCooldown bounds refetches on unknown kids; rotation is still
// picked up within a minute.
const DefaultJWKSCooldown = 15 * time.Second

// maxJWKSBytes bounds a JWKS document.
const maxJWKSBytes = 1 << 20

// NewRemoteKeySet returns a key set for url. cooldown ≤ 0 means DefaultJWKSCooldown.
func NewRemoteKeySet(url string, client *http.Client, cooldown time.Duration, log *slog.Logger) *RemoteKeySet {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if cooldown <= 0 {
		cooldown = DefaultJWKSCooldown
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RemoteKeySet{url: url, client: client, cooldown: cooldown, now: time.Now, log: log}
}

// Fetches reports how many times the JWKS was requested.
func (s *RemoteKeySet) Fetches() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.fetches
}

// VerifySignature implements KeySet.
func (s *RemoteKeySet) VerifySignature(ctx context.Context, token string) ([]byte, error) {
	jws, err := parseCompactJWS(token)
	if err != nil {
		return nil, err
	}
	// The header's own jwk, jku and x5u are deliberately never consulted:
	// keys come only from the configured JWKS.
	keys, err := s.keysFor(ctx, jws.kid, jws.alg)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if jws.verify(k) == nil {
			return jws.payload, nil
		}
	}
	return nil, errSignature
}

// keysFor returns the candidate keys for kid, refetching once per cooldown
// when kid is unknown.
func (s *RemoteKeySet) keysFor(ctx context.Context, kid, alg string) ([]*jose.JSONWebKey, error) {
	if keys := s.lookup(kid, alg); len(keys) > 0 {
		return keys, nil
	}
	if s.coolingDown() {
		// Negative cache: an unknown kid inside the cooldown costs no fetch.
		return nil, errUnknownKey
	}
	// Detach from the caller's cancellation so one impatient request cannot
	// fail the fetch for everybody waiting on it.
	fetchCtx := context.WithoutCancel(ctx)
	ch := s.group.DoChan("fetch", func() (any, error) {
		// Callers that saw no cooldown may arrive here after another
		// caller's fetch has finished: check again, or a flood of unknown
		// kids would fetch once per straggler instead of once per cooldown.
		if s.coolingDown() {
			return nil, nil
		}
		return nil, s.refresh(fetchCtx)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			s.log.Warn("jwks refresh failed", "url", s.url, "err", res.Err)
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if keys := s.lookup(kid, alg); len(keys) > 0 {
		return keys, nil
	}
	return nil, errUnknownKey
}

// coolingDown reports whether the last fetch attempt is within the cooldown.
func (s *RemoteKeySet) coolingDown() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return !s.lastFetch.IsZero() && s.now().Sub(s.lastFetch) < s.cooldown
}

func (s *RemoteKeySet) lookup(kid, alg string) []*jose.JSONWebKey {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if kid != "" {
		if k, ok := s.keys[kid]; ok && keyFitsAlg(*k, alg) {
			return []*jose.JSONWebKey{k}
		}
		return nil
	}
	// A token without kid may be tried against every signing key of its type.
	var out []*jose.JSONWebKey
	for _, k := range s.keys {
		if keyFitsAlg(*k, alg) {
			out = append(out, k)
		}
	}
	return out
}

// Refresh fetches the JWKS now, ignoring the cooldown.
func (s *RemoteKeySet) Refresh(ctx context.Context) error { return s.refresh(ctx) }

func (s *RemoteKeySet) refresh(ctx context.Context) (err error) {
	defer func() { s.observeFetch(err) }()
	s.mu.Lock()
	s.lastFetch = s.now()
	s.fetches++
	s.mu.Unlock()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("jwks fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jwks fetch: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes))
	if err != nil {
		return fmt.Errorf("jwks read: %w", err)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return errors.New("jwks holds no usable signing key")
	}
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
	return nil
}

// parseJWKS keeps only public signing keys of the allowed types. The
// document is read with json/v2's rules (exact names, valid UTF-8), except
// that a repeated name is left to each key's own check (verifies), so that
// one odd key cannot hide the others; go-jose reads each key's material.
func parseJWKS(body []byte) (map[string]*jose.JSONWebKey, error) {
	var doc struct {
		Keys []jsontext.Value `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc, jsontext.AllowDuplicateNames(true)); err != nil {
		return nil, fmt.Errorf("jwks decode: %w", err)
	}
	keys := make(map[string]*jose.JSONWebKey, len(doc.Keys))
	for i, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue // one odd key (an unsupported type) must not hide the others
		}
		if !verifies(raw) {
			continue
		}
		if !k.IsPublic() {
			continue // never accept symmetric or private material as a verification key
		}
		id := k.KeyID
		if id == "" {
			id = fmt.Sprintf("\x00%d", i)
		}
		keys[id] = &k
	}
	return keys, nil
}

// verifies reports whether a JWK may verify signatures (RFC 7517 §4.2,
// §4.3): its "use", when present, is "sig", and its "key_ops", when
// present, lists "verify". An encryption key is never a verification key
// (Wycheproof tcIds 353-356), and a key that describes its purpose in a
// way idflow cannot read (a repeated name, a key_ops that is no array of
// strings) is not used at all.
func verifies(raw jsontext.Value) bool {
	var k struct {
		Use    *string   `json:"use"`
		KeyOps *[]string `json:"key_ops"`
	}
	if err := json.Unmarshal(raw, &k); err != nil {
		return false
	}
	if k.Use != nil && *k.Use != "sig" {
		return false
	}
	return k.KeyOps == nil || slices.Contains(*k.KeyOps, "verify")
}

// keyFitsAlg refuses, for example, an RSA key for an ES256 header, a P-384
// key for ES256, any key whose JWKS entry pins a different algorithm, and
// any algorithm outside AllowedAlgorithms.
func keyFitsAlg(k jose.JSONWebKey, alg string) bool {
	if !allowedAlg(alg) || k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		return alg[0] == 'R' || alg[0] == 'P'
	case *ecdsa.PublicKey:
		curve, _ := ecCurve(alg)
		return curve != nil && key.Curve == curve
	case ed25519.PublicKey:
		return alg == string(jose.EdDSA)
	}
	return false
}

// StaticKeySet verifies against fixed public keys; for keys that idflow
// itself holds (the dev issuer, assertion signing).
type StaticKeySet struct {
	keys map[string]*jose.JSONWebKey
}

// NewStaticKeySet returns a key set of the given public keys.
func NewStaticKeySet(keys ...jose.JSONWebKey) *StaticKeySet {
	m := make(map[string]*jose.JSONWebKey, len(keys))
	for _, k := range keys {
		m[k.KeyID] = &k
	}
	return &StaticKeySet{keys: m}
}

// VerifySignature implements KeySet.
func (s *StaticKeySet) VerifySignature(_ context.Context, token string) ([]byte, error) {
	jws, err := parseCompactJWS(token)
	if err != nil {
		return nil, err
	}
	k, ok := s.keys[jws.kid]
	if !ok || !keyFitsAlg(*k, jws.alg) {
		return nil, errUnknownKey
	}
	if err := jws.verify(k); err != nil {
		return nil, err
	}
	return jws.payload, nil
}
