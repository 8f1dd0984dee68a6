package main

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/idflow/idflow/internal/testsvc"
)

// TestOIDCProviderEndToEnd runs idflow in production mode against an
// independent OpenID provider (the npm oidc-provider, a certified
// implementation that shares no code with idflow), with real tokens
// obtained the way clients obtain them: authorization code + PKCE for
// users, client_credentials for an app.
func TestOIDCProviderEndToEnd(t *testing.T) {
	t.Parallel()
	const (
		audience = "https://api.idflow.test"
		other    = "https://other-api.idflow.test"
	)
	op := testsvc.StartOIDCProvider(t, testsvc.OIDCProviderOptions{Audiences: []string{audience, other}})

	alice := op.UserToken(t, "alice", audience).AccessToken
	bob := op.UserToken(t, "bob", audience).AccessToken
	app := op.AppToken(t, audience).AccessToken
	aliceOther := op.UserToken(t, "alice", other).AccessToken

	srv := startIdflow(t, map[string]string{
		"IDFLOW_OIDC_ISSUER":   op.Issuer,
		"IDFLOW_OIDC_AUDIENCE": audience,
	})

	// The provider's own view of alice's token, to compare with idflow's.
	aliceClaims := jwtClaims(t, alice)
	if aliceClaims["sub"] != "alice" || aliceClaims["iss"] != op.Issuer || aliceClaims["aud"] != audience {
		t.Fatalf("the provider issued unexpected claims: sub %v iss %v aud %v", aliceClaims["sub"], aliceClaims["iss"], aliceClaims["aud"])
	}

	t.Run("users", func(t *testing.T) {
		a := srv.me(t, alice)
		if a.UserID != aliceClaims["sub"] || a.Kind != "user" {
			t.Fatalf("alice: user_id %q kind %q; want the provider's sub %q, kind user", a.UserID, a.Kind, aliceClaims["sub"])
		}
		if a.Issuer != op.Issuer || a.Email != "alice@example.test" || a.TenantID != "t-one" || a.AuthMethod != "bearer" {
			t.Fatalf("alice: %+v; want issuer %s, email alice@example.test, tenant t-one, bearer", a, op.Issuer)
		}
		b := srv.me(t, bob)
		if b.UserID != "bob" || b.Kind != "user" {
			t.Fatalf("bob: %+v; want user bob", b)
		}
		if b.UserID == a.UserID {
			t.Fatalf("alice and bob got the same user id %q", a.UserID)
		}
		// Again, now from the verified-token cache: still the same answers.
		if again := srv.me(t, alice); again.UserID != a.UserID {
			t.Fatalf("alice's second request: user_id %q; want %q", again.UserID, a.UserID)
		}
	})

	t.Run("app-only token", func(t *testing.T) {
		m := srv.me(t, app)
		if m.Kind != "app" || m.UserID != testsvc.OIDCServiceClientID {
			t.Fatalf("client_credentials token: %+v; want kind app for %s", m, testsvc.OIDCServiceClientID)
		}
		// An app never acts as a user: user routes answer 403.
		resp, body := srv.get(t, "/auth/validate", app)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("app token on a user route: status %d, body %s; want 403", resp.StatusCode, body)
		}
	})

	t.Run("no dev issuer in production", func(t *testing.T) {
		if resp, _ := srv.get(t, "/dev/idp/.well-known/openid-configuration", ""); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("production mode serves the dev issuer: status %d", resp.StatusCode)
		}
	})

	// A second, unrelated provider: real tokens, same audience, wrong issuer
	// and keys.
	stranger := testsvc.StartOIDCProvider(t, testsvc.OIDCProviderOptions{Audiences: []string{audience}})
	strangerToken := stranger.UserToken(t, "alice", audience).AccessToken

	refused := map[string]string{
		"no token":                        "",
		"not a JWT":                       "not-a-jwt",
		"payload byte flipped":            flipPayloadByte(t, alice),
		"bob's signature on alice's body": withSignatureOf(alice, bob),
		"alg none, no signature":          withHeader(t, alice, map[string]any{"alg": "none"}, ""),
		"alg none, original signature":    withHeader(t, alice, map[string]any{"alg": "none"}, sigOf(alice)),
		"HS256 keyed with the public key": hmacWithPublicKey(t, op.JWKSURI(), alice),
		"signature stripped":              headerDotPayload(alice) + ".",
		"signature part missing":          headerDotPayload(alice),
		"re-signed, same kid":             resign(t, alice, true),
		"re-signed, new kid":              resign(t, alice, false),
		"embedded jwk header":             resignWithEmbeddedJWK(t, alice),
		"other resource (audience)":       aliceOther,
		"another provider's token":        strangerToken,
		"id token instead of access":      op.UserToken(t, "alice", audience).IDToken,
	}
	for name, tok := range refused {
		t.Run("refused/"+name, func(t *testing.T) {
			resp, body := srv.get(t, "/api/v1/me", tok)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, body %s; want 401", resp.StatusCode, body)
			}
			if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer") {
				t.Fatalf("WWW-Authenticate %q; want a Bearer challenge", ch)
			}
			if strings.Contains(string(body), `"user_id"`) {
				t.Fatalf("a refusal carries a user id: %s", body)
			}
		})
	}

	// The refusals did not disturb the good tokens (no key eviction).
	if m := srv.me(t, bob); m.UserID != "bob" {
		t.Fatalf("bob after the refusals: %+v", m)
	}
}

// parts splits a compact JWS.
func parts(tok string) []string { return strings.SplitN(tok, ".", 3) }

func headerDotPayload(tok string) string {
	p := parts(tok)
	return p[0] + "." + p[1]
}

func sigOf(tok string) string { return parts(tok)[2] }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func unb64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64url: %v", err)
	}
	return b
}

// jwtClaims decodes a JWT's payload without verifying it.
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(unb64(t, parts(tok)[1]), &m); err != nil {
		t.Fatalf("claims: %v", err)
	}
	return m
}

func jwtHeader(t *testing.T, tok string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(unb64(t, parts(tok)[0]), &m); err != nil {
		t.Fatalf("header: %v", err)
	}
	return m
}

// flipPayloadByte changes one byte of the sub value ("alice" → "alicd"),
// keeping the payload valid JSON, and keeps the original signature.
func flipPayloadByte(t *testing.T, tok string) string {
	t.Helper()
	payload := unb64(t, parts(tok)[1])
	i := strings.Index(string(payload), `"sub":"alice"`)
	if i < 0 {
		t.Fatalf("no sub alice in the payload")
	}
	payload[i+len(`"sub":"alice"`)-2] ^= 0x01
	return parts(tok)[0] + "." + b64(payload) + "." + sigOf(tok)
}

func withSignatureOf(tok, donor string) string { return headerDotPayload(tok) + "." + sigOf(donor) }

// withHeader replaces header fields (keeping the others) and the signature.
func withHeader(t *testing.T, tok string, set map[string]any, sig string) string {
	t.Helper()
	h := jwtHeader(t, tok)
	for k, v := range set {
		h[k] = v
	}
	hb, _ := json.Marshal(h)
	return b64(hb) + "." + parts(tok)[1] + "." + sig
}

// hmacWithPublicKey is the classic algorithm confusion: HS256 over the
// original header/payload, keyed with the provider's public key (as PEM,
// the form a naive verifier would use as the "secret").
func hmacWithPublicKey(t *testing.T, jwksURI, tok string) string {
	t.Helper()
	resp, err := http.Get(jwksURI)
	if err != nil {
		t.Fatalf("jwks: %v", err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("jwks: %v (%d keys)", err, len(set.Keys))
	}
	der, err := x509.MarshalPKIXPublicKey(set.Keys[0].Key)
	if err != nil {
		t.Fatalf("jwks key: %v", err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	h := jwtHeader(t, tok)
	h["alg"] = "HS256"
	hb, _ := json.Marshal(h)
	signing := b64(hb) + "." + parts(tok)[1]
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signing))
	return signing + "." + b64(mac.Sum(nil))
}

// resign signs tok's payload with a key the provider never published,
// under the provider's kid (sameKid) or a new one.
func resign(t *testing.T, tok string, sameKid bool) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	kid := "attacker-key"
	if sameKid {
		kid, _ = jwtHeader(t, tok)["kid"].(string)
	}
	h := map[string]any{"alg": "RS256", "typ": "at+jwt", "kid": kid}
	hb, _ := json.Marshal(h)
	signing := b64(hb) + "." + parts(tok)[1]
	digest := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + b64(sig)
}

// resignWithEmbeddedJWK signs with the attacker's key and names that key in
// the header's jwk (which idflow must ignore).
func resignWithEmbeddedJWK(t *testing.T, tok string) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType("at+jwt")
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(unb64(t, parts(tok)[1]))
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := jwtHeader(t, out)["jwk"]; !ok {
		t.Fatal("the forged token has no jwk header")
	}
	return out
}
