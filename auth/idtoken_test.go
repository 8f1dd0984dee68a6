package auth

import (
	"errors"
	"strings"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// A single-page app may send its Entra ID token as a bearer, which
// could be taken for an app-only token (no scp, no idtyp). An ID token is recognised by what
// it lacks — every Entra access token names its client (azp/appid) and
// carries scp or roles/idtyp — and refused with a message saying what to
// send, whatever its aud: SPAs often use one registration for both tokens.
func TestEntraIDTokenRefused(t *testing.T) {
	f := entraFixture(t, nil)
	api := f.iss.Audience()
	u := authtest.EntraUser{ObjectID: "9f3b1a2c-0000-4000-8000-00000000a11c", Name: "Alice", UPN: "alice@contoso.example",
		ClientID: "spa-client", Roles: []string{"admin"}}
	apiAud := u
	apiAud.Audience = api // the SPA and the API are one registration
	for name, c := range map[string]authtest.Claims{
		"v2.0, aud = the API":                  f.iss.EntraV2IDToken(apiAud),
		"v1.0, aud = the API":                  f.iss.EntraV1IDToken(apiAud),
		"v2.0, aud = the SPA":                  f.iss.EntraV2IDToken(u),
		"v1.0, aud = the SPA":                  f.iss.EntraV1IDToken(u),
		"v2.0 with roles, no nonce":            f.iss.EntraV2IDToken(apiAud).Without("nonce"),
		"v2.0 with at_hash":                    f.iss.EntraV2IDToken(apiAud).With("at_hash", "x4Lr0hJk"),
		"v2.0 access token shape, but at_hash": f.iss.EntraV2User(apiAud).With("at_hash", "x4Lr0hJk"),
	} {
		t.Run(name, func(t *testing.T) {
			err := mustRefuse(t, f.v, f.iss.Sign(c), idflow.EUNAUTHORIZED)
			if !errors.Is(err, ErrIDToken) {
				t.Fatalf("err = %v; want ErrIDToken", err)
			}
			want := "send an access token for " + api + ", not an ID token"
			if msg := idflow.ErrorMessage(err); msg != want {
				t.Fatalf("message %q; want %q", msg, want)
			}
		})
	}
	// The access tokens of the same user and of real daemons keep their kind.
	app := authtest.EntraApp{ClientID: "daemon", ObjectID: "sp-1", Roles: []string{"idflow.internal"}}
	for name, tc := range map[string]struct {
		c    authtest.Claims
		kind idflow.Kind
	}{
		"v2.0 delegated":           {f.iss.EntraV2User(apiAud), idflow.KindUser},
		"v1.0 delegated":           {f.iss.EntraV1User(apiAud), idflow.KindUser},
		"v2.0 app-only, roles":     {f.iss.EntraV2App(app), idflow.KindApp},
		"v1.0 app-only, roles":     {f.iss.EntraV1App(app), idflow.KindApp},
		"v2.0 app-only, idtyp":     {f.iss.EntraV2App(func() authtest.EntraApp { a := app; a.IDTyp = true; a.Roles = nil; return a }()), idflow.KindApp},
		"v2.0 app-only, no roles":  {f.iss.EntraV2App(func() authtest.EntraApp { a := app; a.Roles = nil; return a }()), idflow.KindApp},
		"v1.0 app-only, no roles":  {f.iss.EntraV1App(func() authtest.EntraApp { a := app; a.Roles = nil; return a }()), idflow.KindApp},
		"v2.0 delegated, nonce":    {f.iss.EntraV2User(apiAud).With("nonce", "n-1"), idflow.KindUser},
		"v2.0 delegated, idtyp":    {f.iss.EntraV2User(func() authtest.EntraUser { x := apiAud; x.IDTyp = true; return x }()), idflow.KindUser},
		"v2.0 delegated, scp only": {f.iss.EntraV2User(apiAud).Without("azp"), idflow.KindUser},
	} {
		t.Run("kept/"+name, func(t *testing.T) {
			p := mustVerify(t, f.v, f.iss.Sign(tc.c)).Principal
			if p.Kind != tc.kind {
				t.Fatalf("kind %q; want %q (%+v)", p.Kind, tc.kind, p)
			}
		})
	}
}

// For other issuers only the unambiguous signals count: at_hash and c_hash
// exist in ID tokens alone. A nonce does not make an ID token (some IdPs
// copy it into access tokens), nor does an aud equal to a client id.
func TestOIDCIDTokenRefused(t *testing.T) {
	f := newFixture(t, nil)
	base := f.base("alice")
	for name, c := range map[string]authtest.Claims{
		"at_hash":           base.With("at_hash", "77QmUPtjPfzWtF2AnpK9RQ").With("nonce", "n-0S6"),
		"c_hash":            base.With("c_hash", "LDktKdoQak3Pk0cnXxCltA"),
		"at_hash, azp":      base.With("at_hash", "77QmUPtjPfzWtF2AnpK9RQ").With("azp", "spa"),
		"at_hash, ver 2.0":  base.With("at_hash", "77QmUPtjPfzWtF2AnpK9RQ").With("ver", "2.0").With("scp", "x"),
		"at_hash, aud list": base.With("at_hash", "77QmUPtjPfzWtF2AnpK9RQ").With("aud", []string{f.iss.Audience(), "spa"}),
	} {
		t.Run(name, func(t *testing.T) {
			err := mustRefuse(t, f.v, f.iss.Sign(c), idflow.EUNAUTHORIZED)
			if !errors.Is(err, ErrIDToken) || !strings.Contains(idflow.ErrorMessage(err), "not an ID token") {
				t.Fatalf("err = %v", err)
			}
		})
	}
	for name, c := range map[string]authtest.Claims{
		"plain":        base,
		"nonce":        base.With("nonce", "n-0S6"),
		"RFC 9068":     f.iss.RFC9068("alice", "web", "openid"),
		"azp, no hash": base.With("azp", "spa"),
	} {
		t.Run("kept/"+name, func(t *testing.T) {
			if p := mustVerify(t, f.v, f.iss.Sign(c)).Principal; p.Kind != idflow.KindUser || p.UserID != "alice" {
				t.Fatalf("%+v", p)
			}
		})
	}
}

// IDFLOW_OIDC_ACCEPT_ID_TOKENS=true: the weaker mode for SPAs that cannot
// get an access token. The ID token then acts as its user (oid on Entra,
// never the pairwise sub), with no scope, and only for a configured aud.
func TestAcceptIDTokens(t *testing.T) {
	const spa = "spa-client"
	f := entraFixture(t, func(c *VerifierConfig) {
		c.InsecureAcceptIDTokens = true
		c.Audiences = append(c.Audiences, spa)
	})
	u := authtest.EntraUser{ObjectID: "9f3b1a2c-0000-4000-8000-00000000a11c", ClientID: spa, Roles: []string{"admin"}}
	for name, c := range map[string]authtest.Claims{
		"v2.0": f.iss.EntraV2IDToken(u),
		"v1.0": f.iss.EntraV1IDToken(u),
	} {
		t.Run(name, func(t *testing.T) {
			p := mustVerify(t, f.v, f.iss.Sign(c)).Principal
			if p.Kind != idflow.KindUser || p.UserID != u.ObjectID || len(p.Scopes) != 0 || p.UserID == c["sub"] {
				t.Fatalf("%+v", p)
			}
			if id, err := p.Owner(); err != nil || id != u.ObjectID {
				t.Fatalf("Owner = %q, %v", id, err)
			}
		})
	}
	t.Run("aud still checked", func(t *testing.T) {
		o := u
		o.ClientID = "another-spa"
		mustRefuse(t, f.v, f.iss.Sign(f.iss.EntraV2IDToken(o)), idflow.EUNAUTHORIZED)
	})
	t.Run("no oid (profile scope not asked) is no user", func(t *testing.T) {
		mustRefuse(t, f.v, f.iss.Sign(f.iss.EntraV2IDToken(u).Without("oid")), idflow.EUNAUTHORIZED)
	})
	t.Run("app-only tokens are still apps", func(t *testing.T) {
		p := mustVerify(t, f.v, f.iss.Sign(f.iss.EntraV2App(authtest.EntraApp{ClientID: "daemon", Roles: []string{"r"}}))).Principal
		if p.Kind != idflow.KindApp {
			t.Fatalf("%+v", p)
		}
	})
	t.Run("with a required scope: refused at construction", func(t *testing.T) {
		_, err := NewVerifier(VerifierConfig{Issuers: []string{"https://issuer.example"}, Audiences: []string{"api://a"},
			InsecureAcceptIDTokens: true, RequiredScope: "access_as_user"}, NewStaticKeySet())
		if err == nil || !strings.Contains(err.Error(), "scope") {
			t.Fatalf("err = %v", err)
		}
	})
}

// The user claim depends on the issuer: oid for Entra hosts, sub elsewhere
// — an oid claim from another IdP is just a claim, and Entra's sub is
// pairwise (another app sees another sub for the same user).
func TestDefaultUserClaimByIssuer(t *testing.T) {
	entra := []string{
		"https://login.microsoftonline.com/6f1a5c1e-0d2b-4e7a-9b1c-3a5d7e9f0a11/v2.0",
		"https://LOGIN.MICROSOFTONLINE.COM/t/v2.0",
		"https://login.microsoftonline.us/t/v2.0",
		"https://sts.windows.net/6f1a5c1e-0d2b-4e7a-9b1c-3a5d7e9f0a11/",
		"https://contoso.ciamlogin.com/6f1a5c1e-0d2b-4e7a-9b1c-3a5d7e9f0a11/v2.0",
		"https://login.partner.microsoftonline.cn/t/v2.0",
		"https://sts.chinacloudapi.cn/t/",
		"https://login.microsoftonline.com/{tenantid}/v2.0",
	}
	other := []string{
		"https://accounts.google.com",
		"https://idp.example/realms/corp",
		"http://login.microsoftonline.com/t/v2.0", // not https
		"https://login.microsoftonline.com.evil.example/t/v2.0",
		"https://evil.example/login.microsoftonline.com/",
		"https://sts.windows.net.evil.example/t/",
		"https://a.b.ciamlogin.com/t/v2.0",
		"https://ciamlogin.com/t/v2.0",
		"https://login.microsoftonline./t",
		"http://127.0.0.1:8080/6f1a5c1e-0d2b-4e7a-9b1c-3a5d7e9f0a11/v2.0",
		"",
		"::",
	}
	for _, iss := range entra {
		if !EntraIssuer(iss) {
			t.Errorf("%q: not an Entra issuer", iss)
		}
	}
	for _, iss := range other {
		if EntraIssuer(iss) {
			t.Errorf("%q: taken for an Entra issuer", iss)
		}
	}

	// End to end: one verifier, two issuers, no configured claim.
	const tid = authtest.DefaultTenantID
	f := newFixture(t, func(c *VerifierConfig) {
		c.Issuers = append(c.Issuers, authtest.EntraV2IssuerTemplate)
		c.Tenants = []string{tid}
	})
	u := authtest.EntraUser{ObjectID: "0a11ce00-0000-4000-8000-000000000001"}
	c := f.iss.EntraV2User(u)
	if p := mustVerify(t, f.v, f.iss.Sign(c)).Principal; p.UserID != u.ObjectID {
		t.Fatalf("Entra issuer: user %q; want the oid %q", p.UserID, u.ObjectID)
	}
	// The same claims from the non-Entra issuer name the user by sub.
	other1 := c.With("iss", f.iss.Issuer())
	if p := mustVerify(t, f.v, f.iss.Sign(other1)).Principal; p.UserID != c["sub"] {
		t.Fatalf("other issuer: user %q; want the sub %q", p.UserID, c["sub"])
	}
	// An Entra token without oid is refused: never the pairwise sub.
	mustRefuse(t, f.v, f.iss.Sign(c.Without("oid")), idflow.EUNAUTHORIZED)
	// A non-Entra token with only an oid names nobody.
	mustRefuse(t, f.v, f.iss.Sign(other1.Without("sub")), idflow.EUNAUTHORIZED)
}

// Mutable claims cannot be configured as the user claim: a renamed user
// would become someone else, and a recycled address would inherit data.
func TestMutableUserClaimRefused(t *testing.T) {
	for _, claim := range []string{"email", "preferred_username", "upn", "name", "unique_name", "Email", " upn "} {
		_, err := NewVerifier(VerifierConfig{Issuers: []string{"https://issuer.example"}, Audiences: []string{"api://a"},
			UserClaims: []string{"sub", claim}}, NewStaticKeySet())
		if err == nil || !strings.Contains(err.Error(), "can change") {
			t.Errorf("%q: err = %v", claim, err)
		}
	}
	for _, claims := range [][]string{{"oid"}, {"sub"}, {"employee_id", "sub"}} {
		if _, err := NewVerifier(VerifierConfig{Issuers: []string{"https://issuer.example"}, Audiences: []string{"api://a"},
			UserClaims: claims}, NewStaticKeySet()); err != nil {
			t.Errorf("%q refused: %v", claims, err)
		}
	}
}
