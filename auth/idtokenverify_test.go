package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

const loginClient = "web-client"

// idTokenClaims are valid ID token claims for the login's client.
func idTokenClaims(f *fixture, sub, nonce string) authtest.Claims {
	now := f.iss.Now()
	return authtest.Claims{"iss": f.iss.Issuer(), "sub": sub, "aud": loginClient, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"nonce": nonce, "at_hash": "77QmUPtjPfzWtF2AnpK9RQ", "name": "Alice"}
}

func mustRefuseIDToken(t *testing.T, iv *IDTokenVerifier, tok, nonce string) error {
	t.Helper()
	got, err := iv.Verify(context.Background(), tok, nonce)
	if err == nil {
		t.Fatalf("the ID token was accepted: %+v", got)
	}
	if code := idflow.ErrorCode(err); code != idflow.EUNAUTHORIZED {
		t.Fatalf("code %q: %v", code, err)
	}
	if got != (IDToken{}) {
		t.Fatalf("a refusal returned a token: %+v", got)
	}
	assertNoToken(t, err, tok)
	return err
}

// TestIDTokenVerifier: the browser login's ID token passes the bearer
// path's algorithm allowlist, JWS rules and strict claims reader, and then
// what OpenID Connect Core 3.1.3.7 asks of an ID token.
func TestIDTokenVerifier(t *testing.T) {
	f := newFixture(t, func(c *VerifierConfig) {
		c.Issuers = append(c.Issuers, "https://other-issuer.example") // the bearer verifier accepts more
	})
	iv, err := f.v.IDTokens(f.iss.Issuer(), loginClient)
	if err != nil {
		t.Fatal(err)
	}
	const nonce = "n-0S6_WzA2Mj"
	valid := idTokenClaims(f, "alice", nonce)
	got, err := iv.Verify(context.Background(), f.iss.Sign(valid), nonce)
	if err != nil {
		t.Fatalf("a valid ID token is refused: %v", err)
	}
	if got.Subject != "alice" || got.Issuer != f.iss.Issuer() || got.Expiry.IsZero() {
		t.Fatalf("verified %+v", got)
	}
	// Another audience alongside is fine when azp names this client.
	if _, err := iv.Verify(context.Background(), f.iss.Sign(valid.With("aud", []string{"api", loginClient}).With("azp", loginClient)), nonce); err != nil {
		t.Fatalf("two audiences, azp = the client: %v", err)
	}
	// The bearer verifier would refuse this very token (it is an ID token).
	mustRefuse(t, f.v, f.iss.Sign(valid.With("aud", f.iss.Audience())), idflow.EUNAUTHORIZED)

	good := f.iss.Sign(valid)
	parts := strings.Split(good, ".")
	attacker := attackerKey(t, jose.RS256, f.iss.RSA().KID)
	raw := func(payload string) string { return f.iss.Sign([]byte(payload)) }
	iat, exp := valid["iat"], valid["exp"]
	head := fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":%q,"iat":%d,"exp":%d`, f.iss.Issuer(), loginClient, iat, exp)
	cases := map[string]struct {
		tok, nonce, why string // why: what the refusal's reason says
	}{
		// what an ID token must say
		"nonce of another sign-in": {f.iss.Sign(valid.With("nonce", "n-other")), nonce, "nonce mismatch"},
		"no nonce":                 {f.iss.Sign(valid.Without("nonce")), nonce, "nonce mismatch"},
		"no nonce expected":        {f.iss.Sign(valid.With("nonce", "")), "", "nonce mismatch"},
		"nonce prefix":             {f.iss.Sign(valid.With("nonce", nonce[:6])), nonce, "nonce mismatch"},
		"another client's":         {f.iss.Sign(valid.With("aud", "other-client")), nonce, "(aud)"},
		"the API's access token":   {f.iss.Sign(f.base("alice").With("nonce", nonce)), nonce, "(aud)"},
		"two audiences, no azp":    {f.iss.Sign(valid.With("aud", []string{loginClient, "evil"})), nonce, "(azp)"},
		"azp another party":        {f.iss.Sign(valid.With("azp", "evil")), nonce, "(azp)"},
		"another accepted issuer":  {f.iss.Sign(valid.With("iss", "https://other-issuer.example")), nonce, "issuer not accepted"},
		"issuer with a trailing /": {f.iss.Sign(valid.With("iss", f.iss.Issuer()+"/")), nonce, "issuer not accepted"},
		"no sub":                   {f.iss.Sign(valid.Without("sub")), nonce, "without sub"},
		"blank sub":                {f.iss.Sign(valid.With("sub", "  ")), nonce, "without sub"},
		"no exp":                   {f.iss.Sign(valid.Without("exp")), nonce, "without exp"},
		"expired":                  {f.iss.Sign(valid.With("exp", f.iss.Now().Add(-time.Minute).Unix())), nonce, "expired"},
		"no iat":                   {f.iss.Sign(valid.Without("iat")), nonce, "without iat"},
		"issued in the future":     {f.iss.Sign(valid.With("iat", f.iss.Now().Add(time.Hour).Unix())), nonce, "(iat)"},
		"not valid yet":            {f.iss.Sign(valid.With("nbf", f.iss.Now().Add(time.Hour).Unix())), nonce, "(nbf)"},
		// the strict claims reader (encoding/json, as go-oidc reads claims, takes these)
		"NONCE in capitals":     {raw(head + `,"NONCE":"` + nonce + `"}`), nonce, "nonce mismatch"},
		"Aud in another case":   {raw(fmt.Sprintf(`{"iss":%q,"sub":"alice","Aud":%q,"iat":%d,"exp":%d,"nonce":%q}`, f.iss.Issuer(), loginClient, iat, exp, nonce)), nonce, "(aud)"},
		"nonce twice":           {raw(head + `,"nonce":"evil","nonce":"` + nonce + `"}`), nonce, "appears twice"},
		"aud twice":             {raw(head + `,"aud":"evil","nonce":"` + nonce + `"}`), nonce, "appears twice"},
		"a second object":       {raw(head + `,"nonce":"` + nonce + `"}{"sub":"admin"}`), nonce, "malformed JSON"},
		"lone surrogate in sub": {raw(fmt.Sprintf(`{"iss":%q,"sub":"\ud800","aud":%q,"iat":%d,"exp":%d,"nonce":%q}`, f.iss.Issuer(), loginClient, iat, exp, nonce)), nonce, "claim sub"},
		// the JWS layer and the algorithm allowlist
		"alg none":                    {authtest.Compact(map[string]any{"alg": "none"}, valid, nil), nonce, "not a compact JWS"},
		"HS256 with the public key":   {f.iss.Sign(valid, authtest.WithHMAC("HS256", mustJSON(t, f.iss.RSA().JWK())), authtest.WithKID(f.iss.RSA().KID)), nonce, "algorithm not allowed"},
		"impostor key, real kid":      {authtest.SignWith(t, attacker, valid), nonce, "signature invalid"},
		"embedded jwk":                {authtest.SignWith(t, attacker, valid, authtest.WithKID("nope"), authtest.WithHeader("jwk", attacker.JWK())), nonce, "no matching key"},
		"payload swapped":             {parts[0] + "." + strings.Split(f.iss.Sign(valid.With("sub", "admin")), ".")[1] + "." + parts[2], nonce, "signature invalid"},
		"header after the object":     {f.iss.Sign(valid, authtest.WithRawHeader([]byte(`{"alg":"RS256","kid":"`+f.iss.RSA().KID+`"}{"alg":"none"}`))), nonce, "malformed JWS header"},
		"encrypted (5 parts)":         {good + ".x.y", nonce, "not a compact JWS"},
		"over MaxTokenBytes":          {f.iss.Sign(valid.With("pad", strings.Repeat("A", MaxTokenBytes))), nonce, "too large"},
		"newline in the payload":      {parts[0] + "." + parts[1][:8] + "\n" + parts[1][8:] + "." + parts[2], nonce, "outside the base64url alphabet"},
		"PS256 on a pinned RS256 key": {f.iss.Sign(valid, authtest.WithAlg("PS256")), nonce, "no matching key"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if err := mustRefuseIDToken(t, iv, tc.tok, tc.nonce); !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("refused with %v; want a reason saying %q", err, tc.why)
			}
		})
	}

	if _, err := f.v.IDTokens("https://not-configured.example", loginClient); err == nil {
		t.Fatal("an ID token verifier for an issuer the bearer verifier does not accept")
	}
	if _, err := f.v.IDTokens(f.iss.Issuer(), " "); err == nil {
		t.Fatal("an ID token verifier without a client id")
	}
}

// TestIDTokenVerifierTenants: a multi-tenant (Entra common) login accepts
// the ID tokens of allowed tenants only, under the issuer of their own tid.
func TestIDTokenVerifierTenants(t *testing.T) {
	f := entraFixture(t, nil)
	iv, err := f.v.IDTokens(authtest.EntraV2IssuerTemplate, loginClient)
	if err != nil {
		t.Fatal(err)
	}
	u := authtest.EntraUser{ObjectID: "9f3b1a2c-0000-4000-8000-00000000a11c", Name: "Alice", ClientID: loginClient}
	c := f.iss.EntraV2IDToken(u)
	nonce := c["nonce"].(string)
	got, err := iv.Verify(context.Background(), f.iss.Sign(c), nonce)
	if err != nil || got.TenantID != authtest.DefaultTenantID {
		t.Fatalf("an allowed tenant's ID token: %+v, %v", got, err)
	}
	other := "0b7c1e2d-0000-4000-8000-0000000000ff"
	for name, c := range map[string]authtest.Claims{
		"another tenant":                    c.With("tid", other).With("iss", authtest.ExpandIssuer(authtest.EntraV2IssuerTemplate, other)),
		"allowed tid, another tenant's iss": c.With("iss", authtest.ExpandIssuer(authtest.EntraV2IssuerTemplate, other)),
		"the v1.0 issuer":                   f.iss.EntraV1IDToken(u).With("nonce", nonce),
		"the template itself":               c.With("iss", authtest.EntraV2IssuerTemplate),
	} {
		t.Run(name, func(t *testing.T) {
			err := mustRefuseIDToken(t, iv, f.iss.Sign(c), nonce)
			if errors.Is(err, ErrTokenExpired) {
				t.Fatalf("refused for the wrong reason: %v", err)
			}
		})
	}
}
