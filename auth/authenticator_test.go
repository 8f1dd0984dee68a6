package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

const (
	trustedPeer   = "10.1.2.3:40000"
	untrustedPeer = "203.0.113.9:50000"
	assertionHdr  = "X-Idflow-Assertion"
	proxyIssuer   = "https://proxy.idflow.test"
	proxyAudience = "idflow-api"
)

type authFixture struct {
	iss    *authtest.Issuer
	signer *Signer
	a      *Authenticator
}

func newSigner(t *testing.T) *Signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(key, proxyIssuer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newAuthFixture(t *testing.T, sessions Sessions) *authFixture {
	t.Helper()
	iss := authtest.NewIssuer(t)
	v, err := NewVerifier(VerifierConfig{Issuers: []string{iss.Issuer()}, Audiences: []string{iss.Audience(), "https://idflow.test/mcp"}},
		NewStaticKeySet(iss.PublicJWKs()...))
	if err != nil {
		t.Fatal(err)
	}
	signer := newSigner(t)
	av, err := NewAssertionVerifier(proxyIssuer, proxyAudience, signer.KeySet())
	if err != nil {
		t.Fatal(err)
	}
	trusted, err := ParsePrefixes("10.0.0.0/8, 192.0.2.1, 2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	a := New(Config{Bearer: v, Sessions: sessions, Proxy: &ProxyConfig{
		Trusted: trusted, AssertionHeader: assertionHdr, Assertions: av,
	}})
	return &authFixture{iss: iss, signer: signer, a: a}
}

func request(peer string, headers map[string][]string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api/v1/me", nil)
	r.RemoteAddr = peer
	for k, vs := range headers {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	return r
}

func h(kv ...string) map[string][]string {
	m := map[string][]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = append(m[kv[i]], kv[i+1])
	}
	return m
}

func mustAuth(t *testing.T, a *Authenticator, r *http.Request, accept Audiences) idflow.Principal {
	t.Helper()
	p, err := a.Authenticate(r, accept)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	return p
}

func mustNotAuth(t *testing.T, a *Authenticator, r *http.Request, accept Audiences, code string) error {
	t.Helper()
	p, err := a.Authenticate(r, accept)
	if err == nil {
		t.Fatalf("Authenticate accepted: %+v", p)
	}
	if c := idflow.ErrorCode(err); c != code {
		t.Fatalf("code = %q, want %q (%v)", c, code, err)
	}
	if p.UserID != "" || p.Kind != "" {
		t.Fatalf("a refusal returned a Principal: %+v", p)
	}
	if _, tok, _ := strings.Cut(r.Header.Get("Authorization"), " "); len(strings.TrimSpace(tok)) >= 16 {
		assertNoToken(t, err, strings.TrimSpace(tok))
	}
	return err
}

func TestSpoofedIdentityHeaders(t *testing.T) {
	f := newAuthFixture(t, nil)
	bearer := "Bearer " + f.iss.Sign(f.iss.OIDC("alice"))
	mustAuth(t, f.a, request(untrustedPeer, h("Authorization", bearer)), nil) // control
	assertion, err := f.signer.SignAssertion(authtest.User("alice", "t-one"), proxyAudience)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]map[string][]string{
		"user header":                 h("X-Authenticated-User", "admin"),
		"user header + valid bearer":  h("X-Authenticated-User", "admin", "Authorization", bearer),
		"empty user header":           h("X-Authenticated-User", ""),
		"companion only (roles)":      h("X-Authenticated-Roles", "admin"),
		"companion only (tenant)":     h("X-Authenticated-Tenant", "t-two"),
		"companion + bearer":          h("X-Authenticated-Email", "ceo@corp.example", "Authorization", bearer),
		"valid signed assertion":      h(assertionHdr, assertion),
		"assertion + bearer":          h(assertionHdr, assertion, "Authorization", bearer),
		"lower-case header name":      {"x-authenticated-user": {"admin"}},
		"X-Forwarded-For trusted":     h("X-Authenticated-User", "admin", "X-Forwarded-For", "10.0.0.1"),
		"X-Real-IP trusted":           h("X-Authenticated-User", "admin", "X-Real-Ip", "10.0.0.1"),
		"Forwarded trusted":           h("X-Authenticated-User", "admin", "Forwarded", "for=10.0.0.1"),
		"XFF chain ending in trusted": h("X-Authenticated-User", "admin", "X-Forwarded-For", "203.0.113.9, 10.0.0.1"),
	}
	peers := []string{untrustedPeer, "[2001:db9::1]:443", "192.0.2.2:1", "11.0.0.1:1", "[::ffff:203.0.113.9]:1", "garbage", ""}
	for name, hdrs := range cases {
		for _, peer := range peers {
			t.Run(name+"/"+peer, func(t *testing.T) {
				err := mustNotAuth(t, f.a, request(peer, hdrs), nil, idflow.EUNAUTHORIZED)
				if !errors.Is(err, ErrSpoofedHeader) {
					t.Fatalf("err = %v, want ErrSpoofedHeader", err)
				}
			})
		}
	}
	t.Run("no proxy configured", func(t *testing.T) {
		a := New(Config{Bearer: f.a.bearer})
		for _, peer := range []string{untrustedPeer, trustedPeer, "127.0.0.1:1"} {
			err := mustNotAuth(t, a, request(peer, h("X-Authenticated-User", "admin", "Authorization", bearer)), nil, idflow.EUNAUTHORIZED)
			if !errors.Is(err, ErrSpoofedHeader) {
				t.Fatalf("err = %v", err)
			}
		}
	})
}

func TestTrustedProxyHeaders(t *testing.T) {
	f := newAuthFixture(t, nil)
	for _, peer := range []string{trustedPeer, "192.0.2.1:8443", "[2001:db8::7]:443", "[::ffff:10.9.9.9]:1"} {
		t.Run(peer, func(t *testing.T) {
			r := request(peer, h(
				"X-Authenticated-User", "alice",
				"X-Authenticated-Email", "alice@corp.example",
				"X-Authenticated-Name", "Alice Example",
				"X-Authenticated-Tenant", "t-one",
				"X-Authenticated-Roles", "reader, admin,,",
				"X-Authenticated-Groups", "eng,all",
			))
			p := mustAuth(t, f.a, r, nil)
			want := idflow.Principal{UserID: "alice", TenantID: "t-one", Email: "alice@corp.example", Name: "Alice Example",
				Roles: []string{"reader", "admin"}, Groups: []string{"eng", "all"}, Scopes: []string{},
				Kind: idflow.KindUser, AuthMethod: idflow.AuthProxyHeader}
			p.ExpiresAt = time.Time{}
			if !principalEqual(p, want) || p.Scopes == nil {
				t.Fatalf("Principal =\n %+v\nwant\n %+v", p, want)
			}
		})
	}
	t.Run("user only", func(t *testing.T) {
		p := mustAuth(t, f.a, request(trustedPeer, h("X-Authenticated-User", "bob")), nil)
		if p.UserID != "bob" || p.Roles == nil || p.Groups == nil || len(p.Roles)+len(p.Groups) != 0 {
			t.Fatalf("%+v", p)
		}
	})
	refuse := map[string]map[string][]string{
		"repeated user":           h("X-Authenticated-User", "alice", "X-Authenticated-User", "admin"),
		"repeated user, same":     h("X-Authenticated-User", "alice", "X-Authenticated-User", "alice"),
		"empty user":              h("X-Authenticated-User", ""),
		"blank user":              h("X-Authenticated-User", "   "),
		"padded user":             h("X-Authenticated-User", "  alice  "),
		"companions without user": h("X-Authenticated-Email", "a@b.example", "X-Authenticated-Roles", "admin"),
		"repeated roles":          h("X-Authenticated-User", "alice", "X-Authenticated-Roles", "admin", "X-Authenticated-Roles", "reader"),
		"repeated tenant":         h("X-Authenticated-User", "alice", "X-Authenticated-Tenant", "t-two", "X-Authenticated-Tenant", "t-one"),
		"repeated groups":         h("X-Authenticated-User", "alice", "X-Authenticated-Groups", "admins", "X-Authenticated-Groups", "eng"),
		"repeated email":          h("X-Authenticated-User", "alice", "X-Authenticated-Email", "a@x", "X-Authenticated-Email", "b@x"),
		"repeated name":           h("X-Authenticated-User", "alice", "X-Authenticated-Name", "A", "X-Authenticated-Name", "B"),
	}
	for name, hdrs := range refuse {
		t.Run("refuse/"+name, func(t *testing.T) {
			mustNotAuth(t, f.a, request(trustedPeer, hdrs), nil, idflow.EUNAUTHORIZED)
		})
	}
	t.Run("custom user header", func(t *testing.T) {
		trusted, _ := ParsePrefixes("10.0.0.0/8")
		a := New(Config{Proxy: &ProxyConfig{Trusted: trusted, UserHeader: "X-Forwarded-User"}})
		p := mustAuth(t, a, request(trustedPeer, h("X-Forwarded-User", "carol", "X-Forwarded-Roles", "admin")), nil)
		if p.UserID != "carol" || !slices.Equal(p.Roles, []string{"admin"}) {
			t.Fatalf("%+v", p)
		}
		err := mustNotAuth(t, a, request(untrustedPeer, h("X-Forwarded-Roles", "admin")), nil, idflow.EUNAUTHORIZED)
		if !errors.Is(err, ErrSpoofedHeader) {
			t.Fatal(err)
		}
	})
	t.Run("bearer from a trusted peer still wins", func(t *testing.T) {
		tok := f.iss.Sign(f.iss.OIDC("alice"))
		p := mustAuth(t, f.a, request(trustedPeer, h("Authorization", "Bearer "+tok, "X-Authenticated-User", "bob")), nil)
		if p.UserID != "alice" || p.AuthMethod != idflow.AuthBearer {
			t.Fatalf("%+v", p)
		}
	})
}

func TestSignedAssertionHeader(t *testing.T) {
	f := newAuthFixture(t, nil)
	user := authtest.User("alice", "t-one", "reader")
	sign := func(s *Signer, p idflow.Principal, aud string) string {
		t.Helper()
		tok, err := s.SignAssertion(p, aud)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	t.Run("valid", func(t *testing.T) {
		r := request(trustedPeer, h(assertionHdr, sign(f.signer, user, proxyAudience),
			"X-Authenticated-User", "mallory")) // the assertion is preferred
		p := mustAuth(t, f.a, r, nil)
		if p.UserID != "alice" || p.TenantID != "t-one" || p.AuthMethod != idflow.AuthProxyAssertion ||
			p.Kind != idflow.KindUser || !slices.Equal(p.Roles, []string{"reader"}) || p.Email != user.Email {
			t.Fatalf("%+v", p)
		}
	})
	expired := newSigner(t)
	*expired = *f.signer
	expired.now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	other := newSigner(t)
	otherIssuer := newSigner(t)
	otherIssuer.key, otherIssuer.signer, otherIssuer.kid = f.signer.key, f.signer.signer, f.signer.kid
	otherIssuer.issuer = "https://elsewhere.test"
	for name, tok := range map[string]string{
		"expired":      sign(expired, user, proxyAudience),
		"wrong signer": sign(other, user, proxyAudience),
		"wrong aud":    sign(f.signer, user, "some-other-service"),
		"wrong iss":    sign(otherIssuer, user, proxyAudience),
		"empty user":   sign(f.signer, authtest.User("", "t-one"), proxyAudience),
		"garbage":      "not-a-jwt",
		"bearer token": f.iss.Sign(f.iss.OIDC("alice")),
	} {
		t.Run("refuse/"+name, func(t *testing.T) {
			// No fallback to the plain header when the assertion is bad.
			r := request(trustedPeer, h(assertionHdr, tok, "X-Authenticated-User", "alice"))
			mustNotAuth(t, f.a, r, nil, idflow.EUNAUTHORIZED)
		})
	}
}

func TestBearerAuthentication(t *testing.T) {
	f := newAuthFixture(t, nil)
	tok := f.iss.Sign(f.iss.OIDC("alice"))
	mcpTok := f.iss.Sign(f.iss.OIDC("alice").With("aud", "https://idflow.test/mcp"))
	t.Run("accepted", func(t *testing.T) {
		for _, hv := range []string{"Bearer " + tok, "bearer " + tok, "BEARER " + tok, "Bearer   " + tok + "  "} {
			p := mustAuth(t, f.a, request(untrustedPeer, h("Authorization", hv)), nil)
			if p.UserID != "alice" || p.AuthMethod != idflow.AuthBearer {
				t.Fatalf("%+v", p)
			}
		}
	})
	t.Run("route audiences", func(t *testing.T) {
		mustAuth(t, f.a, request(untrustedPeer, h("Authorization", "Bearer "+mcpTok)), Audiences{"https://idflow.test/mcp"})
		mustAuth(t, f.a, request(untrustedPeer, h("Authorization", "Bearer "+tok)), Audiences{f.iss.Audience(), "https://idflow.test/mcp"})
		mustNotAuth(t, f.a, request(untrustedPeer, h("Authorization", "Bearer "+tok)), Audiences{"https://idflow.test/mcp"}, idflow.EUNAUTHORIZED)
		mustNotAuth(t, f.a, request(untrustedPeer, h("Authorization", "Bearer "+mcpTok)), Audiences{f.iss.Audience()}, idflow.EUNAUTHORIZED)
		mustNotAuth(t, f.a, request(untrustedPeer, h("Authorization", "Bearer "+tok)), Audiences{}, idflow.EUNAUTHORIZED)
		if _, err := f.a.VerifyToken(context.Background(), tok, Audiences{"https://idflow.test/mcp"}); err == nil {
			t.Fatal("VerifyToken ignored the route audiences")
		}
	})
	for name, hv := range map[string]string{
		"Basic":              "Basic YWxpY2U6c2VjcmV0",
		"Basic with a JWT":   "Basic " + tok,
		"Bearer only":        "Bearer",
		"Bearer space":       "Bearer ",
		"Bearer spaces":      "Bearer    ",
		"no scheme":          tok,
		"Token scheme":       "Token " + tok,
		"Bearer: colon":      "Bearer:" + tok,
		"tab separator":      "Bearer\t" + tok,
		"two tokens":         "Bearer " + tok + " " + tok,
		"Bearer garbage":     "Bearer not.a.jwt",
		"Bearerx":            "Bearerx " + tok,
		"DPoP scheme":        "DPoP " + tok,
		"quoted":             `Bearer "` + tok + `"`,
		"comma-joined twice": "Bearer " + tok + ", Bearer " + tok,
	} {
		t.Run("refuse/"+name, func(t *testing.T) {
			mustNotAuth(t, f.a, request(untrustedPeer, h("Authorization", hv)), nil, idflow.EUNAUTHORIZED)
		})
	}
	t.Run("no credentials", func(t *testing.T) {
		for _, peer := range []string{untrustedPeer, trustedPeer, "127.0.0.1:9"} {
			mustNotAuth(t, f.a, request(peer, nil), nil, idflow.EUNAUTHORIZED)
		}
		mustNotAuth(t, New(Config{}), request(trustedPeer, nil), nil, idflow.EUNAUTHORIZED)
	})
	t.Run("no bearer configured", func(t *testing.T) {
		a := New(Config{})
		mustNotAuth(t, a, request(untrustedPeer, h("Authorization", "Bearer "+tok)), nil, idflow.EUNAUTHORIZED)
		if a.HasBearer() {
			t.Fatal("HasBearer with no verifier")
		}
	})
}

// fakeSessions is a Sessions with one session.
type fakeSessions struct {
	id, csrf string
	p        idflow.Principal
}

func (s fakeSessions) Lookup(_ context.Context, id string) (idflow.Principal, string, error) {
	if id != s.id {
		return idflow.Principal{}, "", idflow.Errorf(idflow.EUNAUTHORIZED, "session expired")
	}
	return s.p, s.csrf, nil
}

func TestSessionCookie(t *testing.T) {
	sess := fakeSessions{id: "sess-1", csrf: "csrf-1", p: authtest.User("alice", "t-one")}
	f := newAuthFixture(t, sess)
	req := func(method, cookie, csrf string) *http.Request {
		r := httptest.NewRequest(method, "/api/v1/facts", nil)
		r.RemoteAddr = untrustedPeer
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: cookie})
		if csrf != "" {
			r.Header.Set(CSRFHeader, csrf)
		}
		return r
	}
	if p := mustAuth(t, f.a, req(http.MethodGet, "sess-1", ""), nil); p.UserID != "alice" {
		t.Fatalf("%+v", p)
	}
	mustAuth(t, f.a, req(http.MethodPost, "sess-1", "csrf-1"), nil)
	for _, csrf := range []string{"", "csrf-2", "CSRF-1"} {
		err := mustNotAuth(t, f.a, req(http.MethodPost, "sess-1", csrf), nil, idflow.EFORBIDDEN)
		if !errors.Is(err, ErrCSRF) {
			t.Fatal(err)
		}
	}
	mustNotAuth(t, f.a, req(http.MethodGet, "sess-2", ""), nil, idflow.EUNAUTHORIZED)
	// A spoofed header next to a valid cookie is still refused.
	r := req(http.MethodGet, "sess-1", "")
	r.Header.Set("X-Authenticated-User", "admin")
	if err := mustNotAuth(t, f.a, r, nil, idflow.EUNAUTHORIZED); !errors.Is(err, ErrSpoofedHeader) {
		t.Fatal(err)
	}
}

func TestFromSnapshot(t *testing.T) {
	if _, err := FromSnapshot(idflow.Snapshot{}); err == nil || idflow.ErrorCode(err) != idflow.EUNAUTHORIZED {
		t.Fatalf("empty snapshot: %v", err)
	}
	if _, err := FromSnapshot(idflow.Snapshot{TenantID: "t-one", Roles: []string{"admin"}}); err == nil {
		t.Fatal("snapshot without user accepted")
	}
	for _, blank := range []string{" ", "\t", "\n"} {
		if _, err := FromSnapshot(idflow.Snapshot{UserID: blank}); err == nil {
			t.Fatalf("snapshot with blank user %q accepted", blank)
		}
	}
	src := authtest.User("alice", "t-one", "reader")
	snap := src.Snapshot()
	p, err := FromSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	if p.UserID != "alice" || p.TenantID != "t-one" || p.Kind != idflow.KindUser || p.AuthMethod != idflow.AuthJob ||
		!slices.Equal(p.Roles, []string{"reader"}) || p.Groups == nil || p.Scopes == nil || p.Issuer != src.Issuer {
		t.Fatalf("%+v", p)
	}
	snap.Roles[0] = "admin"
	if p.Roles[0] != "reader" {
		t.Fatal("the Principal shares its roles with the snapshot")
	}
	if id, err := p.Owner(); err != nil || id != "alice" {
		t.Fatalf("Owner = %q, %v", id, err)
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes(" 10.0.0.0/8 ,192.0.2.1,, 2001:db8::/32, ::ffff:198.51.100.7, 172.16.5.4/12, ::ffff:10.0.0.0/104")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32", "198.51.100.7/32", "172.16.0.0/12", "10.0.0.0/8"}
	var gs []string
	for _, p := range got {
		gs = append(gs, p.String())
	}
	if !slices.Equal(gs, want) {
		t.Fatalf("got %q, want %q", gs, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "10.0.0", "example.com", "10.0.0.0/8/8", "::/129", "1.2.3.4/-1", "10.0.0.1, nope",
		"0.0.0.0/0", "::/0", "0.0.0.0/7", "::ffff:0.0.0.0/96"} {
		if _, err := ParsePrefixes(bad); err == nil {
			t.Fatalf("ParsePrefixes(%q) accepted", bad)
		}
	}
	if got, err := ParsePrefixes(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
}
