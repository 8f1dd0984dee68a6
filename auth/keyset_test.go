package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

func randomKid(t testing.TB) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// fetchDelta returns a function reporting how many JWKS fetches happened
// since it was made, as counted by the key set and by the server; both
// counts must agree.
func fetchDelta(t *testing.T, f *fixture) func() int64 {
	t.Helper()
	ks, srv := f.keys.Fetches(), f.iss.JWKSRequests()
	return func() int64 {
		t.Helper()
		a, b := f.keys.Fetches()-ks, f.iss.JWKSRequests()-srv
		if a != b {
			t.Fatalf("key set counted %d fetches, JWKS server %d", a, b)
		}
		return a
	}
}

func TestKeyRotation(t *testing.T) {
	f := newFixture(t, nil, authtest.WithLifetime(24*time.Hour))
	old := f.iss.RSA()
	oldTok := f.iss.Sign(f.base("alice"))
	fetches := fetchDelta(t, f)
	mustVerify(t, f.v, oldTok)
	if n := fetches(); n != 1 {
		t.Fatalf("first verification made %d fetches, want 1", n)
	}

	// Hours later the IdP publishes a new key next to the old one.
	f.clock.Advance(2 * time.Hour)
	next := authtest.NewKey(t, jose.RS256, "rsa-2")
	f.iss.AddKey(next)
	newTok := f.iss.Sign(f.base("bob"), authtest.WithKey(next))
	mustVerify(t, f.v, newTok)
	if n := fetches(); n != 2 {
		t.Fatalf("a new kid took %d fetches in total, want exactly one more", n)
	}
	for range 5 {
		mustVerify(t, f.v, oldTok) // old key still published: still valid
		mustVerify(t, f.v, newTok)
	}
	if n := fetches(); n != 2 {
		t.Fatalf("known kids caused fetches: %d", n)
	}

	// The old key is withdrawn. Tokens it signed keep verifying until the
	// next refresh (the key set cannot know earlier), then stop.
	f.iss.RemoveKey(old.KID)
	mustVerify(t, f.v, oldTok)
	f.clock.Advance(DefaultJWKSCooldown)
	mustRefuse(t, f.v, f.iss.Sign(f.base("x"), authtest.WithKID(randomKid(t))), idflow.EUNAUTHORIZED)
	if n := fetches(); n != 3 {
		t.Fatalf("fetches = %d, want 3", n)
	}
	mustRefuse(t, f.v, oldTok, idflow.EUNAUTHORIZED)
	mustVerify(t, f.v, newTok)
}

func TestKeyRotationWithinCooldown(t *testing.T) {
	f := newFixture(t, nil)
	mustVerify(t, f.v, f.iss.Sign(f.base("alice"))) // loads the keys now
	fetches := fetchDelta(t, f)

	// A key appears right after the fetch: it is unknown until the cooldown
	// ends (bounding the IdP's load), then picked up with one fetch.
	next := f.iss.Rotate(nil, jose.ES256)
	tok := f.iss.Sign(f.base("bob"), authtest.WithKey(next))
	mustRefuse(t, f.v, tok, idflow.EUNAUTHORIZED)
	f.clock.Advance(DefaultJWKSCooldown - time.Nanosecond)
	mustRefuse(t, f.v, tok, idflow.EUNAUTHORIZED)
	if n := fetches(); n != 0 {
		t.Fatalf("fetches inside the cooldown: %d", n)
	}
	f.clock.Advance(time.Nanosecond)
	mustVerify(t, f.v, tok)
	if n := fetches(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
	if DefaultJWKSCooldown > time.Minute {
		t.Fatalf("DefaultJWKSCooldown %s: a rotated key must be accepted within a minute", DefaultJWKSCooldown)
	}
}

// flood verifies n tokens with random unknown kids at once (plus valid
// tokens interleaved) and fails if any unknown-kid token is accepted or
// any valid token refused.
func flood(t *testing.T, f *fixture, n int, valid string) {
	t.Helper()
	toks := make([]string, n)
	keys := []*authtest.Key{f.iss.Ed(), f.iss.EC()} // fast to sign
	for i := range toks {
		toks[i] = f.iss.Sign(f.base("flood"), authtest.WithKey(keys[i%2]), authtest.WithKID(randomKid(t)))
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	var accepted, validRefused atomic.Int64
	for i := range toks {
		wg.Go(func() {
			<-start
			if _, err := f.v.Verify(context.Background(), toks[i]); err == nil {
				accepted.Add(1)
			}
			if i%50 == 0 {
				if _, err := f.v.Verify(context.Background(), valid); err != nil {
					validRefused.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if accepted.Load() != 0 || validRefused.Load() != 0 {
		t.Fatalf("unknown kids accepted: %d; valid tokens refused: %d", accepted.Load(), validRefused.Load())
	}
}

func TestUnknownKidFlood(t *testing.T) {
	f := newFixture(t, nil, authtest.WithLifetime(24*time.Hour))
	valid := f.iss.Sign(f.base("alice"))
	mustVerify(t, f.v, valid)
	fetches := fetchDelta(t, f)

	// Inside the cooldown of the initial fetch: no fetch at all.
	flood(t, f, 1000, valid)
	if n := fetches(); n != 0 {
		t.Fatalf("1000 unknown kids inside the cooldown caused %d fetches", n)
	}
	// Cooldown over: 1000 concurrent unknown kids share exactly one fetch.
	f.clock.Advance(DefaultJWKSCooldown)
	flood(t, f, 1000, valid)
	if n := fetches(); n != 1 {
		t.Fatalf("1000 concurrent unknown kids caused %d fetches, want 1", n)
	}
	// Still the same window, up to its last nanosecond.
	f.clock.Advance(DefaultJWKSCooldown - time.Nanosecond)
	flood(t, f, 500, valid)
	if n := fetches(); n != 1 {
		t.Fatalf("fetches = %d inside the second window, want 1", n)
	}
	// The window ends: exactly one more.
	f.clock.Advance(time.Nanosecond)
	flood(t, f, 500, valid)
	if n := fetches(); n != 2 {
		t.Fatalf("fetches = %d after the cooldown expired, want 2", n)
	}
	mustVerify(t, f.v, valid)
}

func TestJWKSOutageKeepsKnownKeys(t *testing.T) {
	outages := map[string]func(*authtest.Issuer){
		"status 500":  func(i *authtest.Issuer) { i.Outage(true) },
		"status 404":  func(i *authtest.Issuer) { i.SetJWKSStatus(http.StatusNotFound) },
		"server gone": func(i *authtest.Issuer) { i.Close() },
		"not JSON":    func(i *authtest.Issuer) { i.SetRawJWKS(json.RawMessage(`"oops"`)) },
		"empty set":   func(i *authtest.Issuer) { i.SetRawJWKS() },
		"only oct key": func(i *authtest.Issuer) {
			i.SetRawJWKS(json.RawMessage(`{"kty":"oct","kid":"k","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}`))
		},
	}
	for name, outage := range outages {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, nil, authtest.WithLifetime(24*time.Hour))
			toks := []string{
				f.iss.Sign(f.base("alice"), authtest.WithKey(f.iss.RSA())),
				f.iss.Sign(f.base("bob"), authtest.WithKey(f.iss.EC())),
				f.iss.Sign(f.base("carol"), authtest.WithKey(f.iss.Ed())),
			}
			for _, tok := range toks {
				mustVerify(t, f.v, tok)
			}
			fetches := f.keys.Fetches()
			outage(f.iss)
			for round := range 3 {
				f.clock.Advance(DefaultJWKSCooldown)
				// An unknown kid makes the key set try (and fail) to refresh…
				mustRefuse(t, f.v, f.iss.Sign(f.base("x"), authtest.WithKey(f.iss.Key("ec-1")), authtest.WithKID(randomKid(t))), idflow.EUNAUTHORIZED)
				if got := f.keys.Fetches() - fetches; got != int64(round+1) {
					t.Fatalf("round %d: %d fetch attempts", round, got)
				}
				// …without forgetting the keys it had.
				for _, tok := range toks {
					mustVerify(t, f.v, tok)
				}
			}
			if err := f.keys.Refresh(context.Background()); err == nil {
				t.Fatal("Refresh reported success during the outage")
			}
			for _, tok := range toks {
				mustVerify(t, f.v, tok)
			}
		})
	}
	t.Run("outage before the first fetch", func(t *testing.T) {
		f := newFixture(t, nil)
		tok := f.iss.Sign(f.base("alice"))
		f.iss.Outage(true)
		mustRefuse(t, f.v, tok, idflow.EUNAUTHORIZED)
		f.iss.Outage(false)
		mustRefuse(t, f.v, tok, idflow.EUNAUTHORIZED) // still cooling down
		f.clock.Advance(DefaultJWKSCooldown)
		mustVerify(t, f.v, tok) // recovered
	})
	t.Run("cancelled request while a fetch is needed", func(t *testing.T) {
		f := newFixture(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := f.v.Verify(ctx, f.iss.Sign(f.base("alice")))
		if err == nil || idflow.ErrorCode(err) != idflow.EUNAVAILABLE {
			t.Fatalf("err = %v, want EUNAVAILABLE", err)
		}
	})
}

func TestJWKSIgnoresSymmetricAndPrivateKeys(t *testing.T) {
	f := newFixture(t, nil)
	secret := []byte("an-hmac-secret-of-at-least-32-bytes!!")
	privRSA := authtest.NewKey(t, jose.RS256, "priv-rsa")
	privEC := authtest.NewKey(t, jose.ES256, "priv-ec")
	encKey := authtest.NewKey(t, jose.RS256, "enc-rsa")
	raw := func(k jose.JSONWebKey) json.RawMessage {
		b, err := k.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	f.iss.AddRawJWK(raw(jose.JSONWebKey{Key: secret, KeyID: "oct-1", Algorithm: "HS256", Use: "sig"}))
	f.iss.AddRawJWK(raw(jose.JSONWebKey{Key: secret, KeyID: "oct-2"}))
	f.iss.AddRawJWK(raw(jose.JSONWebKey{Key: privRSA.Signer, KeyID: privRSA.KID, Algorithm: "RS256", Use: "sig"}))
	f.iss.AddRawJWK(raw(jose.JSONWebKey{Key: privEC.Signer, KeyID: privEC.KID, Algorithm: "ES256"}))
	f.iss.AddRawJWK(raw(jose.JSONWebKey{Key: encKey.Public(), KeyID: encKey.KID, Use: "enc"}))
	f.iss.AddRawJWK(json.RawMessage(`{"kty":"weird","kid":"w"}`))

	claims := f.base("mallory")
	mustVerify(t, f.v, f.iss.Sign(claims)) // the good keys still load and work
	for name, tok := range map[string]string{
		"HS256 with published oct key":      f.iss.Sign(claims, authtest.WithHMAC("HS256", secret), authtest.WithKID("oct-1")),
		"HS256, oct key without alg":        f.iss.Sign(claims, authtest.WithHMAC("HS256", secret), authtest.WithKID("oct-2")),
		"RS256 with published private key":  authtest.SignWith(t, privRSA, claims),
		"ES256 with published private key":  authtest.SignWith(t, privEC, claims),
		"RS256 with use=enc key":            authtest.SignWith(t, encKey, claims),
		"RS256 with use=enc key, no kid":    authtest.SignWith(t, encKey, claims, authtest.WithoutKID()),
		"RS256 with private key, no kid":    authtest.SignWith(t, privRSA, claims, authtest.WithoutKID()),
		"HS256 with oct key, RS256 in hdr":  f.iss.Sign(claims, authtest.WithHMAC("HS256", secret), authtest.WithKID("oct-1"), authtest.WithAlg("RS256")),
		"unknown kty":                       f.iss.Sign(claims, authtest.WithKID("w")),
		"HS512 with the secret, kid=rsa-1":  f.iss.Sign(claims, authtest.WithHMAC("HS512", secret), authtest.WithKID("rsa-1")),
		"issuer key, kid of the oct key":    f.iss.Sign(claims, authtest.WithKID("oct-1")),
		"issuer key, kid of the private ec": f.iss.Sign(claims, authtest.WithKey(f.iss.EC()), authtest.WithKID("priv-ec")),
	} {
		t.Run(name, func(t *testing.T) { mustRefuse(t, f.v, tok, idflow.EUNAUTHORIZED) })
	}

	keys, err := parseJWKS(f.iss.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range keys {
		if !k.IsPublic() {
			t.Fatalf("parseJWKS kept non-public key %q", k.KeyID)
		}
		kids = append(kids, k.KeyID)
	}
	slices.Sort(kids)
	if want := []string{"ec-1", "ed-1", "rsa-1"}; !slices.Equal(kids, want) {
		t.Fatalf("usable keys = %q, want %q", kids, want)
	}
}

// TestJWKSKeyPurpose: a JWKS entry verifies signatures only when what it
// says of its purpose allows it: "use" absent or "sig", "key_ops" absent or
// listing "verify" (RFC 7517 §4.2, §4.3). An encryption key published next
// to the signing keys never verifies a token, with its kid or without one.
func TestJWKSKeyPurpose(t *testing.T) {
	f := newFixture(t, nil)
	claims := f.base("mallory")
	jwk := func(k *authtest.Key, extra string) json.RawMessage {
		b, err := (&jose.JSONWebKey{Key: k.Public(), KeyID: k.KID, Algorithm: string(k.Alg)}).MarshalJSON() // no use
		if err != nil {
			t.Fatal(err)
		}
		return json.RawMessage(strings.TrimSuffix(string(b), "}") + extra + "}")
	}
	keys := map[string]struct {
		extra string
		used  bool
	}{
		"use-sig":            {`,"use":"sig"`, true},
		"ops-verify":         {`,"key_ops":["verify"]`, true},
		"ops-sign-verify":    {`,"key_ops":["sign","verify"]`, true},
		"both":               {`,"use":"sig","key_ops":["verify"]`, true},
		"use-enc":            {`,"use":"enc"`, false},
		"ops-encrypt":        {`,"key_ops":["encrypt"]`, false},
		"ops-wrap":           {`,"key_ops":["wrapKey","unwrapKey"]`, false},
		"ops-sign-only":      {`,"key_ops":["sign"]`, false},
		"ops-empty":          {`,"key_ops":[]`, false},
		"ops-not-an-array":   {`,"key_ops":"verify"`, false},
		"ops-VERIFY":         {`,"key_ops":["VERIFY"]`, false},
		"use-sig-ops-enc":    {`,"use":"sig","key_ops":["encrypt"]`, false},
		"use-SIG":            {`,"use":"SIG"`, false},
		"ops-verify-twice":   {`,"key_ops":["verify"],"key_ops":["verify"]`, false},
		"use-enc-ops-verify": {`,"use":"enc","key_ops":["verify"]`, false},
	}
	signers := map[string]*authtest.Key{}
	for kid, k := range keys {
		key := authtest.NewKey(t, jose.ES256, kid)
		signers[kid] = key
		f.iss.AddRawJWK(jwk(key, k.extra))
	}
	mustVerify(t, f.v, f.iss.Sign(claims)) // the issuer's own keys still work
	for kid, k := range keys {
		t.Run(kid, func(t *testing.T) {
			tok := authtest.SignWith(t, signers[kid], claims)
			if k.used {
				mustVerify(t, f.v, tok)
				return
			}
			mustRefuse(t, f.v, tok, idflow.EUNAUTHORIZED)
			mustRefuse(t, f.v, authtest.SignWith(t, signers[kid], claims, authtest.WithoutKID()), idflow.EUNAUTHORIZED)
		})
	}
}

func TestKeyTypeMustFitAlg(t *testing.T) {
	f := newFixture(t, nil)
	rsaPub := f.iss.RSA().Public()
	ecPub := f.iss.EC().Public()
	edPub := f.iss.Ed().Public()
	p384 := authtest.NewKey(t, jose.ES384, "p384").Public()
	cases := []struct {
		key  jose.JSONWebKey
		alg  string
		want bool
	}{
		{jose.JSONWebKey{Key: rsaPub}, "RS256", true},
		{jose.JSONWebKey{Key: rsaPub}, "PS512", true},
		{jose.JSONWebKey{Key: rsaPub, Algorithm: "RS256"}, "RS256", true},
		{jose.JSONWebKey{Key: rsaPub, Algorithm: "RS256"}, "PS256", false},
		{jose.JSONWebKey{Key: rsaPub}, "ES256", false},
		{jose.JSONWebKey{Key: rsaPub}, "EdDSA", false},
		{jose.JSONWebKey{Key: rsaPub}, "HS256", false},
		{jose.JSONWebKey{Key: rsaPub}, "none", false},
		{jose.JSONWebKey{Key: rsaPub}, "", false},
		{jose.JSONWebKey{Key: ecPub}, "ES256", true},
		{jose.JSONWebKey{Key: ecPub}, "ES384", false},
		{jose.JSONWebKey{Key: p384}, "ES256", false},
		{jose.JSONWebKey{Key: p384}, "ES384", true},
		{jose.JSONWebKey{Key: ecPub}, "RS256", false},
		{jose.JSONWebKey{Key: ecPub}, "EdDSA", false},
		{jose.JSONWebKey{Key: edPub}, "EdDSA", true},
		{jose.JSONWebKey{Key: edPub}, "ES256", false},
		{jose.JSONWebKey{Key: edPub, Algorithm: "ES256"}, "EdDSA", false},
		{jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef")}, "HS256", false},
		{jose.JSONWebKey{Key: f.iss.RSA().Signer}, "RS256", false}, // private keys never verify
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%T/%s/pinned=%s", tc.key.Key, tc.alg, tc.key.Algorithm), func(t *testing.T) {
			if got := keyFitsAlg(tc.key, tc.alg); got != tc.want {
				t.Fatalf("keyFitsAlg = %v, want %v", got, tc.want)
			}
		})
	}

	// End to end: an RSA key's kid under an ES256 header is never tried,
	// whichever signature the token carries.
	claims := f.base("mallory")
	for name, tok := range map[string]string{
		"ES256 hdr, RSA kid, EC sig":   f.iss.Sign(claims, authtest.WithKey(f.iss.EC()), authtest.WithKID(f.iss.RSA().KID)),
		"ES256 hdr, RSA kid, RSA sig":  f.iss.Sign(claims, authtest.WithKey(f.iss.RSA()), authtest.WithAlg("ES256")),
		"RS256 hdr, EC kid, EC sig":    f.iss.Sign(claims, authtest.WithKey(f.iss.EC()), authtest.WithAlg("RS256")),
		"EdDSA hdr, RSA kid, Ed sig":   f.iss.Sign(claims, authtest.WithKey(f.iss.Ed()), authtest.WithKID(f.iss.RSA().KID)),
		"ES256 hdr, no kid, RSA sig":   f.iss.Sign(claims, authtest.WithKey(f.iss.RSA()), authtest.WithAlg("ES256"), authtest.WithoutKID()),
		"ES256 hdr, Ed kid, zero sig":  f.iss.Sign(claims, authtest.WithKey(f.iss.EC()), authtest.WithKID(f.iss.Ed().KID), authtest.WithSignature(make([]byte, 64))),
		"EdDSA hdr, EC kid, zero sig":  f.iss.Sign(claims, authtest.WithKey(f.iss.Ed()), authtest.WithKID(f.iss.EC().KID), authtest.WithSignature(make([]byte, 64))),
		"RS256 hdr, Ed kid, empty sig": f.iss.Sign(claims, authtest.WithAlg("RS256"), authtest.WithKID(f.iss.Ed().KID), authtest.WithSignature(nil)),
	} {
		t.Run(name, func(t *testing.T) { mustRefuse(t, f.v, tok, idflow.EUNAUTHORIZED) })
	}
}

func TestStaticKeySet(t *testing.T) {
	iss := authtest.NewIssuer(t)
	ks := NewStaticKeySet(iss.PublicJWKs()...)
	claims := iss.OIDC("alice")
	for _, k := range iss.Keys() {
		if _, err := ks.VerifySignature(context.Background(), iss.Sign(claims, authtest.WithKey(k))); err != nil {
			t.Fatalf("%s: %v", k.KID, err)
		}
	}
	for name, tok := range map[string]string{
		"unknown kid":    iss.Sign(claims, authtest.WithKID("nope")),
		"no kid":         iss.Sign(claims, authtest.WithoutKID()),
		"other key":      authtest.SignWith(t, authtest.NewKey(t, jose.ES256, "ec-1"), claims),
		"alg none":       authtest.Compact(map[string]string{"alg": "none", "kid": "rsa-1"}, claims, nil),
		"HS256 with pub": iss.Sign(claims, authtest.WithHMAC("HS256", mustJSON(t, iss.RSA().JWK())), authtest.WithKID("rsa-1")),
		"alg mismatch":   iss.Sign(claims, authtest.WithKey(iss.EC()), authtest.WithKID("rsa-1")),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ks.VerifySignature(context.Background(), tok); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// countingKeySet counts signature verifications (cache misses).
type countingKeySet struct {
	KeySet
	n atomic.Int64
}

func (c *countingKeySet) VerifySignature(ctx context.Context, tok string) ([]byte, error) {
	c.n.Add(1)
	return c.KeySet.VerifySignature(ctx, tok)
}

func cachedFixture(t *testing.T, size int) (*fixture, *countingKeySet) {
	f := newFixture(t, nil)
	counting := &countingKeySet{KeySet: f.keys}
	v, err := NewVerifier(VerifierConfig{
		Issuers: []string{f.iss.Issuer()}, Audiences: []string{f.iss.Audience()},
		CacheSize: size, Now: f.clock.Now,
	}, counting)
	if err != nil {
		t.Fatal(err)
	}
	f.v = v
	return f, counting
}

func TestCachedTokenStillExpires(t *testing.T) {
	f, counting := cachedFixture(t, 0)
	exp := f.clock.Now().Add(10 * time.Minute)
	tok := f.iss.Sign(f.base("alice").With("exp", exp.Unix()).With("roles", []string{"reader"}))
	first := mustVerify(t, f.v, tok)
	for range 10 {
		got := mustVerify(t, f.v, tok)
		if !principalEqual(got.Principal, first.Principal) || !slices.Equal(got.Audiences, first.Audiences) {
			t.Fatalf("cached Principal differs: %+v vs %+v", got.Principal, first.Principal)
		}
	}
	if n := counting.n.Load(); n != 1 {
		t.Fatalf("signature verified %d times, want 1 (cache unused)", n)
	}

	// A caller that scribbles on its copy does not change the cache.
	got := mustVerify(t, f.v, tok)
	got.Principal.Roles[0] = "admin"
	got.Audiences[0] = "api://evil"
	again := mustVerify(t, f.v, tok)
	if again.Principal.Roles[0] != "reader" || again.Audiences[0] != f.iss.Audience() {
		t.Fatalf("the cache shares memory with callers: roles %q aud %q", again.Principal.Roles, again.Audiences)
	}

	// A tampered variant of a cached token is not served from the cache.
	mustRefuse(t, f.v, tok[:len(tok)-2]+"AA", idflow.EUNAUTHORIZED)

	// Up to exp + leeway it is still valid; from then on refused.
	f.clock.Advance(10*time.Minute + 29*time.Second)
	mustVerify(t, f.v, tok)
	f.clock.Advance(time.Second)
	mustRefuse(t, f.v, tok, idflow.EUNAUTHORIZED)
	f.clock.Advance(time.Hour)
	mustRefuse(t, f.v, tok, idflow.EUNAUTHORIZED)
}

func TestCacheDisabled(t *testing.T) {
	f, counting := cachedFixture(t, -1)
	tok := f.iss.Sign(f.base("alice"))
	for range 3 {
		mustVerify(t, f.v, tok)
	}
	if n := counting.n.Load(); n != 3 {
		t.Fatalf("CacheSize -1: %d signature checks for 3 verifications", n)
	}
}

func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}

func TestTokenCacheBounded(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	for _, size := range []int{1, 2, 7, 10, 15, 16, 17, 100, 1000, 10000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c := newTokenCache(size)
			for i := range 5*size + 50 {
				var d [32]byte
				if _, err := rand.Read(d[:]); err != nil {
					t.Fatal(err)
				}
				c.put(d, Token{}, now.Add(time.Hour), now)
				if n := c.len(); n > size {
					t.Fatalf("after %d inserts the cache holds %d entries, size %d", i+1, n, size)
				}
			}
			if n := c.len(); n == 0 {
				t.Fatal("the cache holds nothing")
			}
		})
	}
	t.Run("expired entries go first", func(t *testing.T) {
		c := newTokenCache(32)
		var live [][32]byte
		for i := range 32 {
			var d [32]byte
			d[0], d[1] = byte(i), 1
			exp := now.Add(time.Minute) // expires soon
			if i%2 == 0 {
				exp = now.Add(time.Hour)
				live = append(live, d)
			}
			c.put(d, Token{Audiences: []string{"x"}}, exp, now)
		}
		later := now.Add(2 * time.Minute) // the odd ones have expired
		for i := range 32 {
			var d [32]byte
			d[0], d[1] = byte(i), 2
			c.put(d, Token{}, later.Add(time.Hour), later)
		}
		kept := 0
		for _, d := range live {
			if _, ok := c.get(d, later); ok {
				kept++
			}
		}
		if kept == 0 {
			t.Fatal("live entries were evicted while expired ones could have gone")
		}
	})
	t.Run("through the verifier", func(t *testing.T) {
		f, _ := cachedFixture(t, 20)
		for i := range 200 {
			mustVerify(t, f.v, f.iss.Sign(f.base(fmt.Sprint("user-", i)), authtest.WithKey(f.iss.Ed())))
			if n := f.v.cache.len(); n > 20 {
				t.Fatalf("verifier cache holds %d entries, CacheSize 20", n)
			}
		}
	})
}

func TestRemoteKeySetRefusesOversizedJWKS(t *testing.T) {
	f := newFixture(t, nil)
	huge := json.RawMessage(`{"kty":"oct","k":"` + string(make([]byte, 0)) + `","pad":"` + string(slices.Repeat([]byte("A"), maxJWKSBytes)) + `"}`)
	f.iss.AddRawJWK(huge)
	err := f.keys.Refresh(context.Background())
	if err == nil {
		t.Fatal("a JWKS over maxJWKSBytes was accepted")
	}
	if errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// TestDiscoveryWithTestIssuer runs discovery and verification end to end
// against a multi-tenant test issuer whose metadata names {tenantid}, with
// Entra v2.0-shaped tokens whose iss is <server>/{tid}/v2.0.
func TestDiscoveryWithTestIssuer(t *testing.T) {
	const t1 = "11111111-1111-1111-1111-111111111111"
	clock := newFakeClock()
	iss := authtest.NewIssuer(t, authtest.WithIssuerPath("/{tenantid}/v2.0"), authtest.WithClock(clock.Now))
	iss2 := authtest.NewIssuer(t, authtest.WithIssuerPath("/{tenantid}/v2.0"), authtest.WithClock(clock.Now),
		authtest.WithEntraIssuers("", "")) // a second, unrelated issuer
	ctx := context.Background()

	for _, alias := range []string{"common", "organizations"} {
		d, err := Discover(ctx, nil, iss.IssuerFor(alias))
		if err != nil {
			t.Fatalf("Discover(%s): %v", alias, err)
		}
		if d.Issuer != iss.Issuer() || d.JWKSURI != iss.JWKSURL() {
			t.Fatalf("discovery = %+v", d)
		}
	}
	if _, err := Discover(ctx, nil, iss.IssuerFor(t1)); err == nil {
		t.Fatal("Discover accepted a tenant-specific issuer against {tenantid} metadata")
	}
	plain := authtest.NewIssuer(t)
	if d, err := Discover(ctx, nil, plain.Issuer()); err != nil || d.JWKSURI != plain.JWKSURL() {
		t.Fatalf("plain discovery: %+v, %v", d, err)
	}
	if plain.DiscoveryRequests() != 1 {
		t.Fatalf("discovery requests = %d", plain.DiscoveryRequests())
	}

	d, err := Discover(ctx, nil, iss.IssuerFor("organizations"))
	if err != nil {
		t.Fatal(err)
	}
	keys := NewRemoteKeySet(d.JWKSURI, nil, 0, nil)
	keys.now = clock.Now
	// The issuer is Entra-shaped but not on an Entra host, so oid is named
	// explicitly (the default there would be sub).
	v, err := NewVerifier(VerifierConfig{Issuers: []string{d.Issuer}, Audiences: []string{iss.Audience()},
		Tenants: []string{t1}, UserClaims: []string{"oid"}, Now: clock.Now, CacheSize: -1}, keys)
	if err != nil {
		t.Fatal(err)
	}
	u := authtest.EntraUser{TenantID: t1, ObjectID: "oid-1", Issuer: iss.Issuer()}
	p := mustVerify(t, v, iss.Sign(iss.EntraV2User(u))).Principal
	if p.UserID != "oid-1" || p.TenantID != t1 || p.Issuer != iss.IssuerFor(t1) {
		t.Fatalf("%+v", p)
	}
	// The same claims from the other server's keys, or naming the other
	// server as issuer, are refused.
	mustRefuse(t, v, iss2.Sign(iss.EntraV2User(u)), idflow.EUNAUTHORIZED)
	u.Issuer = iss2.Issuer()
	mustRefuse(t, v, iss.Sign(iss.EntraV2User(u)), idflow.EUNAUTHORIZED)
}
