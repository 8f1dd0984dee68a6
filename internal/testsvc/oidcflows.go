package testsvc

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// More clients of testdata/oidcprovider/server.js (test-only credentials).
const (
	// OIDCDownstreamClientID is confidential (client_secret_basic) with
	// authorization code and rotating refresh tokens: the provider in the
	// downstream role of idflow's connect flow. Its redirect URIs are those
	// of the public and web clients (OIDCProviderOptions.RedirectURIs).
	OIDCDownstreamClientID     = "idflow-test-downstream"
	OIDCDownstreamClientSecret = "idflow-test-downstream-secret"
	// OIDCCLIClientID is a public native client: authorization code on
	// http://127.0.0.1:<any port>/callback (RFC 8252), the device flow
	// (RFC 8628), rotating refresh tokens.
	OIDCCLIClientID = "idflow-test-cli"
)

// OIDCEndpoints are endpoints of the provider's discovery document.
type OIDCEndpoints struct {
	Authorization       string `json:"authorization_endpoint"`
	Token               string `json:"token_endpoint"`
	Revocation          string `json:"revocation_endpoint"`
	DeviceAuthorization string `json:"device_authorization_endpoint"`
	Introspection       string `json:"introspection_endpoint"`
	JWKS                string `json:"jwks_uri"`
}

// Endpoints reads the provider's discovery document.
func (op *OIDCProvider) Endpoints(t testing.TB) OIDCEndpoints {
	t.Helper()
	resp, err := http.Get(op.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatalf("oidc-provider discovery: %v", err)
	}
	defer resp.Body.Close()
	var e OIDCEndpoints
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("oidc-provider discovery: %v", err)
	}
	return e
}

// Active asks the provider's introspection endpoint (RFC 7662), as the
// confidential client clientID, whether token is active.
func (op *OIDCProvider) Active(t testing.TB, token, clientID, secret string) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, op.Endpoints(t).Introspection,
		strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("introspection: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		Active bool `json:"active"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("introspection: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("introspection: %v", err)
	}
	return out.Active
}

// Browse plays a user's browser at the provider, starting with a GET of
// start — an authorization request built by someone else (idflow's
// connect flow, `idflow login`) or a device flow's verification URI. It
// follows the provider's own redirects, signs in as account on the login
// form (any password), consents, and confirms a device code. It returns
// the first redirect that leaves the provider (the client's redirect URI,
// with code and state), or nil when it ends on the device flow's success
// page.
func (op *OIDCProvider) Browse(t testing.TB, start, account string) *url.URL {
	t.Helper()
	u, err := op.browse(start, account)
	if err != nil {
		t.Fatalf("browsing %s as %s: %v", start, account, err)
	}
	return u
}

func (op *OIDCProvider) browse(start, account string) (*url.URL, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	issuer, err := url.Parse(op.Issuer)
	if err != nil {
		return nil, err
	}
	next, err := http.NewRequest(http.MethodGet, start, nil)
	if err != nil {
		return nil, err
	}
	for step := 0; step < 25; step++ {
		resp, err := client.Do(next)
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
			if err != nil {
				return nil, fmt.Errorf("redirect: %w", err)
			}
			if loc.Host != issuer.Host {
				return loc, nil
			}
			if next, err = http.NewRequest(http.MethodGet, loc.String(), nil); err != nil {
				return nil, err
			}
		case resp.StatusCode == http.StatusOK:
			page := string(body)
			action, fields, ok := firstForm(page)
			if !ok {
				if strings.Contains(page, "Sign-in Success") {
					return nil, nil
				}
				return nil, fmt.Errorf("%s: a page without a form: %s", resp.Request.URL.Path, lastLines(page, 5))
			}
			switch {
			case fields.Get("prompt") == "login":
				fields.Set("login", account)
				fields.Set("password", "any password")
			case fields.Get("prompt") == "consent":
			case fields.Has("xsrf") && fields.Get("user_code") != "":
				// the device code: submitted as shown, then confirmed
			default:
				return nil, fmt.Errorf("%s: unexpected form %v", resp.Request.URL.Path, fields)
			}
			target, err := resp.Request.URL.Parse(action)
			if err != nil {
				return nil, err
			}
			if next, err = http.NewRequest(http.MethodPost, target.String(), strings.NewReader(fields.Encode())); err != nil {
				return nil, err
			}
			next.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		default:
			return nil, fmt.Errorf("%s %s: status %d: %s", next.Method, next.URL.Path, resp.StatusCode, lastLines(string(body), 5))
		}
	}
	return nil, errors.New("no end after 25 steps")
}

// firstForm returns the action and named inputs of the first form in page.
func firstForm(page string) (string, url.Values, bool) {
	m := formRe.FindStringSubmatch(page)
	if m == nil {
		return "", nil, false
	}
	fields := url.Values{}
	for _, in := range inputRe.FindAllString(m[2], -1) {
		n := attrName.FindStringSubmatch(in)
		if n == nil {
			continue
		}
		v := ""
		if vm := attrVal.FindStringSubmatch(in); vm != nil {
			v = html.UnescapeString(vm[1])
		}
		fields.Set(html.UnescapeString(n[1]), v)
	}
	return html.UnescapeString(m[1]), fields, true
}

// ResourceServer is an API protected by the provider's JWT access tokens
// (RFC 9068): GET /whoami answers the token's sub, client_id and scope. It
// stands for a downstream service that trusts the provider, not idflow.
type ResourceServer struct {
	URL      string
	Audience string

	mu   sync.Mutex
	seen []string // the Authorization header of every request
}

// StartResourceServer starts a ResourceServer for audience, verifying
// tokens against op's JWKS.
func (op *OIDCProvider) StartResourceServer(t testing.TB, audience string) *ResourceServer {
	t.Helper()
	rs := &ResourceServer{Audience: audience}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		rs.mu.Lock()
		rs.seen = append(rs.seen, auth)
		rs.mu.Unlock()
		claims, err := op.verifyAccessToken(strings.TrimPrefix(auth, "Bearer "), audience)
		if err != nil || !strings.HasPrefix(auth, "Bearer ") {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, `{"error":"invalid_token"}`, http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/whoami" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"sub": claims["sub"], "client_id": claims["client_id"],
			"scope": claims["scope"], "aud": claims["aud"]})
	}))
	t.Cleanup(srv.Close)
	rs.URL = srv.URL
	return rs
}

// Seen returns the Authorization headers the server received, in order.
func (rs *ResourceServer) Seen() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]string{}, rs.seen...)
}

// verifyAccessToken checks an RS256 JWT access token of op for audience.
func (op *OIDCProvider) verifyAccessToken(raw, audience string) (map[string]any, error) {
	resp, err := http.Get(op.JWKSURI())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return nil, err
	}
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(jws.Signatures) != 1 {
		return nil, errors.New("not a JWS")
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		return nil, errors.New("unknown key")
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, err
	}
	exp, _ := claims["exp"].(float64)
	if claims["iss"] != op.Issuer || time.Now().Unix() >= int64(exp) {
		return nil, errors.New("wrong issuer or expired")
	}
	switch aud := claims["aud"].(type) {
	case string:
		if aud == audience {
			return claims, nil
		}
	case []any:
		for _, a := range aud {
			if a == audience {
				return claims, nil
			}
		}
	}
	return nil, errors.New("wrong audience")
}
