package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/internal/testsvc"
	"github.com/idflow/idflow/sqlite"
	"github.com/idflow/idflow/vault"
)

const testPublicURL = "https://idflow.example"

func testStore(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "idflow.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func testSealer(t *testing.T) *vault.Keyring {
	t.Helper()
	k, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ring, err := vault.ParseKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

// signIn runs the browser's part of a sign-in: /auth/login, the provider
// (authorize answers the authorization request and returns the redirect
// back to idflow), then /auth/callback with the login cookie. It answers
// the callback's result and its response.
func signIn(t *testing.T, l *Login, authorize func(authorizeURL *url.URL) *url.URL) (Account, *httptest.ResponseRecorder, error) {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := l.HandleLogin(rec, httptest.NewRequest(http.MethodGet, "/auth/login", nil)); err != nil {
		t.Fatal(err)
	}
	start, err := url.Parse(rec.Header().Get("Location"))
	if err != nil || rec.Code != http.StatusFound {
		t.Fatalf("login answered %d, Location %q", rec.Code, rec.Header().Get("Location"))
	}
	back := authorize(start)
	if back == nil || !strings.HasPrefix(back.String(), testPublicURL+"/auth/callback?") {
		t.Fatalf("the provider sent the browser to %v", back)
	}
	req := httptest.NewRequest(http.MethodGet, "/auth/callback?"+back.RawQuery, nil)
	for _, c := range rec.Result().Cookies() {
		req.AddCookie(c)
	}
	cb := httptest.NewRecorder()
	acct, err := l.HandleCallback(cb, req)
	return acct, cb, err
}

func sessionCookie(l *Login, rec *httptest.ResponseRecorder) string {
	for _, c := range rec.Result().Cookies() {
		if c.Name == l.Cookies().Session && c.MaxAge > 0 {
			return c.Value
		}
	}
	return ""
}

// TestLoginWithOIDCProvider signs in through an independent OpenID
// provider (npm oidc-provider): its real ID token passes idflow's own ID
// token check, its access token the bearer verifier, and the session
// resolves to the user.
func TestLoginWithOIDCProvider(t *testing.T) {
	const audience = "https://api.idflow.test"
	op := testsvc.StartOIDCProvider(t, testsvc.OIDCProviderOptions{Audiences: []string{audience},
		RedirectURIs: []string{testPublicURL + "/auth/callback"}})
	ctx := t.Context()
	disc, err := auth.Discover(ctx, nil, op.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	access, err := auth.NewVerifier(auth.VerifierConfig{Issuers: []string{disc.Issuer}, Audiences: []string{audience}},
		auth.NewRemoteKeySet(disc.JWKSURI, nil, 0, nil))
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLogin(Config{PublicURL: testPublicURL, ClientID: testsvc.OIDCWebClientID, ClientSecret: testsvc.OIDCWebClientSecret,
		Scopes: []string{"openid", "profile", "email"}}, disc, access, testStore(t), testSealer(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	acct, rec, err := signIn(t, l, func(u *url.URL) *url.URL {
		if u.Query().Get("nonce") == "" || u.Query().Get("code_challenge_method") != "S256" {
			t.Errorf("authorization request without nonce or PKCE: %v", u)
		}
		return op.Browse(t, u.String(), "alice")
	})
	if err != nil {
		t.Fatalf("sign-in refused: %v", err)
	}
	if acct.UserID != "alice" || acct.TenantID != "t-one" {
		t.Fatalf("signed in %+v", acct)
	}
	id := sessionCookie(l, rec)
	if id == "" {
		t.Fatal("no session cookie")
	}
	p, csrf, err := l.Lookup(ctx, id)
	if err != nil || p.UserID != "alice" || p.AuthMethod != idflow.AuthSession || csrf == "" {
		t.Fatalf("session: %+v %q %v", p, csrf, err)
	}
}

// fakeProvider is a token endpoint that answers each code with the tokens
// the test chose for it, signed by an authtest issuer.
type fakeProvider struct {
	iss *authtest.Issuer
	srv *httptest.Server

	mu     sync.Mutex
	answer func(nonce string) map[string]any
	nonce  string
}

func newFakeProvider(t *testing.T) *fakeProvider {
	fp := &fakeProvider{iss: authtest.NewIssuer(t)}
	fp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fp.mu.Lock()
		answer, nonce := fp.answer, fp.nonce
		fp.mu.Unlock()
		if r.Method != http.MethodPost || r.FormValue("grant_type") != "authorization_code" || r.FormValue("code") != "the-code" {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(answer(nonce))
	}))
	t.Cleanup(fp.srv.Close)
	return fp
}

// authorize plays the provider's authorization endpoint: it notes the
// nonce of the request and sends the browser back with a code.
func (fp *fakeProvider) authorize(u *url.URL) *url.URL {
	fp.mu.Lock()
	fp.nonce = u.Query().Get("nonce")
	fp.mu.Unlock()
	q := url.Values{"code": {"the-code"}, "state": {u.Query().Get("state")}}
	back, _ := url.Parse(u.Query().Get("redirect_uri") + "?" + q.Encode())
	return back
}

// TestLoginIDTokenCheck: the browser login checks its ID token on the
// bearer path (algorithm allowlist, JWS rules, strict claims reader), so
// what go-oidc let through before — claim names in another case, a
// repeated claim — is refused, as is every token that is not this
// sign-in's ID token for this client.
func TestLoginIDTokenCheck(t *testing.T) {
	fp := newFakeProvider(t)
	iss := fp.iss
	const client = "idflow-web"
	access, err := auth.NewVerifier(auth.VerifierConfig{Issuers: []string{iss.Issuer()}, Audiences: []string{iss.Audience()}, CacheSize: -1},
		auth.NewRemoteKeySet(iss.JWKSURL(), nil, 0, nil))
	if err != nil {
		t.Fatal(err)
	}
	disc := auth.Discovery{Issuer: iss.Issuer(), JWKSURI: iss.JWKSURL(), AuthorizationEndpoint: "https://op.invalid/authorize",
		TokenEndpoint: fp.srv.URL + "/token"}
	l, err := NewLogin(Config{PublicURL: testPublicURL, ClientID: client}, disc, access, testStore(t), testSealer(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	accessToken := iss.Sign(iss.OIDC("alice"))
	idClaims := func(nonce string) authtest.Claims {
		now := time.Now()
		return authtest.Claims{"iss": iss.Issuer(), "sub": "alice", "aud": client, "iat": now.Unix(),
			"exp": now.Add(time.Hour).Unix(), "nonce": nonce}
	}
	raw := func(format string, args ...any) func(nonce string) string {
		return func(nonce string) string {
			now := time.Now()
			head := fmt.Sprintf(`{"iss":%q,"sub":"alice","iat":%d,"exp":%d`, iss.Issuer(), now.Unix(), now.Add(time.Hour).Unix())
			return iss.Sign([]byte(head + fmt.Sprintf(format, append(args, nonce)...) + "}"))
		}
	}
	other := authtest.NewIssuer(t) // another provider's keys
	cases := map[string]func(nonce string) string{
		"nonce of another sign-in": func(string) string { return iss.Sign(idClaims("n-other")) },
		"no nonce":                 func(n string) string { return iss.Sign(idClaims(n).Without("nonce")) },
		"NONCE in capitals":        raw(`,"aud":%q,"NONCE":%q`, client),
		"nonce twice":              raw(`,"aud":%q,"nonce":"evil","nonce":%q`, client),
		"AUD in capitals":          raw(`,"AUD":%q,"nonce":%q`, client),
		"another client's":         func(n string) string { return iss.Sign(idClaims(n).With("aud", "other-client")) },
		"two audiences, no azp":    func(n string) string { return iss.Sign(idClaims(n).With("aud", []string{client, "evil"})) },
		"the access token":         func(string) string { return accessToken },
		"expired":                  func(n string) string { return iss.Sign(idClaims(n).With("exp", time.Now().Add(-time.Hour).Unix())) },
		"another issuer":           func(n string) string { return iss.Sign(idClaims(n).With("iss", "https://evil.example")) },
		"another provider's key":   func(n string) string { return other.Sign(idClaims(n)) },
		"HS256 with the public key": func(n string) string {
			b, _ := json.Marshal(iss.RSA().JWK())
			return iss.Sign(idClaims(n), authtest.WithHMAC("HS256", b), authtest.WithKID(iss.RSA().KID))
		},
		"ES256 header on the RSA key": func(n string) string {
			return authtest.SignWith(t, iss.RSA(), idClaims(n), authtest.WithAlg(string(jose.ES256)))
		},
		"alg none": func(n string) string {
			return authtest.Compact(map[string]any{"alg": "none", "kid": iss.RSA().KID}, idClaims(n), []byte{})
		},
	}
	answerWith := func(idToken func(string) string) {
		fp.mu.Lock()
		fp.answer = func(nonce string) map[string]any {
			a := map[string]any{"access_token": accessToken, "token_type": "Bearer", "expires_in": 3600}
			if idToken != nil {
				a["id_token"] = idToken(nonce)
			}
			return a
		}
		fp.mu.Unlock()
	}

	// The control: this sign-in's ID token is accepted.
	answerWith(func(n string) string { return iss.Sign(idClaims(n)) })
	acct, rec, err := signIn(t, l, fp.authorize)
	if err != nil || acct.UserID != "alice" || sessionCookie(l, rec) == "" {
		t.Fatalf("a valid sign-in: %+v, %v", acct, err)
	}
	for name, idToken := range cases {
		t.Run(name, func(t *testing.T) {
			answerWith(idToken)
			acct, rec, err := signIn(t, l, fp.authorize)
			if err == nil || idflow.ErrorCode(err) != idflow.EUNAUTHORIZED || acct != (Account{}) {
				t.Fatalf("sign-in: %+v, %v; want it refused", acct, err)
			}
			if msg := idflow.ErrorMessage(err); msg != "invalid ID token" {
				t.Fatalf("refused with %q (%v); want the ID token check's refusal", msg, err)
			}
			if sessionCookie(l, rec) != "" {
				t.Fatal("a session cookie was set")
			}
		})
	}
	t.Run("no ID token", func(t *testing.T) {
		answerWith(nil)
		if _, _, err := signIn(t, l, fp.authorize); idflow.ErrorCode(err) != idflow.EUNAUTHORIZED {
			t.Fatalf("sign-in without an ID token: %v", err)
		}
	})
	if _, err := NewLogin(Config{PublicURL: testPublicURL, ClientID: client}, auth.Discovery{Issuer: "https://evil.example"},
		access, testStore(t), testSealer(t), nil); err == nil {
		t.Fatal("a login for an issuer the bearer verifier does not accept")
	}
}
