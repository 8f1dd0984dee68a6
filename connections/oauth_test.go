package connections_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/vault"
)

// tokenRequest is what a token endpoint received.
type tokenRequest struct {
	basicUser, basicPass string
	form                 url.Values
}

// TestClientAuthenticationIsNeverGuessed: codes are redeemed and tokens
// refreshed (through x/oauth2) with the configured client authentication
// only. A refusal is final: x/oauth2's auto-detection would retry with the
// other style and send the code a second time, which a strict issuer has
// spent.
func TestClientAuthenticationIsNeverGuessed(t *testing.T) {
	for _, tc := range []struct {
		method, secret string
		basic          bool     // credentials in an Authorization: Basic header
		formCreds      []string // client credentials in the form
	}{
		{"client_secret_basic", "s3cr:t&=", true, nil},
		{"client_secret_post", "s3cr:t&=", false, []string{"client_id", "client_secret"}},
		{"none", "", false, []string{"client_id"}},
		{"none", "unused-secret", false, []string{"client_id"}}, // "none" wins over a configured secret
	} {
		t.Run(fmt.Sprintf("%s/secret=%t", tc.method, tc.secret != ""), func(t *testing.T) {
			var mu sync.Mutex
			var got []tokenRequest
			refuse := true
			te := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_ = r.ParseForm()
				u, p, _ := r.BasicAuth()
				mu.Lock()
				got = append(got, tokenRequest{u, p, r.PostForm})
				no := refuse
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				if no {
					w.WriteHeader(http.StatusUnauthorized)
					_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"wrong authentication"}`))
					return
				}
				_, _ = w.Write([]byte(`{"access_token":"at-1","refresh_token":"rt-1","token_type":"Bearer","expires_in":3600}`))
			}))
			t.Cleanup(te.Close)
			secret := ""
			if tc.secret != "" {
				secret = fmt.Sprintf(`, "client_secret": %q`, tc.secret)
			}
			reg := registry(t, fmt.Sprintf(`{"providers": [{"name": "acme", "authorize_url": "%s/a", "token_url": "%s/t",
				"client_id": "idflow:acme"%s, "token_auth_method": %q, "api_base_url": "https://api.example"}]}`,
				te.URL, te.URL, secret, tc.method), nil)
			m := manager(t, reg, nil)
			ctx := t.Context()
			check := func(wantGrant string) {
				t.Helper()
				mu.Lock()
				defer mu.Unlock()
				if len(got) != 1 {
					t.Fatalf("%d token requests for one %s; want exactly one", len(got), wantGrant)
				}
				r := got[0]
				got = nil
				if r.form.Get("grant_type") != wantGrant {
					t.Fatalf("grant_type %q", r.form.Get("grant_type"))
				}
				if tc.basic != (r.basicUser != "") {
					t.Fatalf("Basic credentials %q; want them: %t", r.basicUser, tc.basic)
				}
				// RFC 6749 §2.3.1: both parts form-encoded before Basic.
				if tc.basic && (r.basicUser != url.QueryEscape("idflow:acme") || r.basicPass != url.QueryEscape(tc.secret)) {
					t.Fatalf("Basic %q:%q", r.basicUser, r.basicPass)
				}
				for _, k := range []string{"client_id", "client_secret"} {
					want := ""
					for _, f := range tc.formCreds {
						if f == k {
							want = map[string]string{"client_id": "idflow:acme", "client_secret": tc.secret}[k]
						}
					}
					if v := r.form.Get(k); v != want {
						t.Fatalf("form %s = %q; want %q", k, v, want)
					}
				}
			}

			// A refused code: one request, the code sent once.
			raw, err := m.Connect(ctx, alice, "acme")
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(raw)
			_, err = m.Callback(ctx, alice, "acme", url.Values{"code": {"the-code"}, "state": {u.Query().Get("state")}})
			if idflow.ErrorCode(err) != idflow.EFORBIDDEN || !strings.Contains(idflow.ErrorMessage(err), "invalid_client") {
				t.Fatalf("refused redemption: %v", err)
			}
			check("authorization_code")

			// Accepted, then a refused refresh: one request each.
			mu.Lock()
			refuse = false
			mu.Unlock()
			raw, _ = m.Connect(ctx, alice, "acme")
			u, _ = url.Parse(raw)
			if _, err := m.Callback(ctx, alice, "acme", url.Values{"code": {"the-code"}, "state": {u.Query().Get("state")}}); err != nil {
				t.Fatal(err)
			}
			check("authorization_code")
			if _, err := m.Vault().Put(ctx, alice, "acme", vault.Token{AccessToken: "at-1", RefreshToken: "rt-1",
				Expiry: time.Now().Add(-time.Second)}); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			refuse = true
			mu.Unlock()
			if _, err := m.Vault().Get(ctx, alice, "acme"); err == nil {
				t.Fatal("a refused refresh gave a token")
			}
			check("refresh_token")
		})
	}
}

// TestTokenAnswers: what a token endpoint answers, through x/oauth2, in
// JSON or (GitHub's legacy) form encoding, becomes the same vault token;
// answers that are no usable bearer token are refused.
func TestTokenAnswers(t *testing.T) {
	for name, tc := range map[string]struct {
		contentType, body string
		status            int
		wantAccess        string
		wantExpiry        bool
		wantScopes        string
		wantErr           string
	}{
		"JSON":                     {"application/json", `{"access_token":"at","token_type":"Bearer","expires_in":600,"scope":"a b"}`, 200, "at", true, "a b", ""},
		"JSON, expires_in string":  {"application/json", `{"access_token":"at","token_type":"bearer","expires_in":"600"}`, 200, "at", true, "", ""},
		"JSON, no expiry":          {"application/json", `{"access_token":"at"}`, 200, "at", false, "", ""},
		"JSON, absurd expiry":      {"application/json", `{"access_token":"at","expires_in":999999999999}`, 200, "at", false, "", ""},
		"form":                     {"application/x-www-form-urlencoded", "access_token=at&token_type=bearer&expires_in=600&scope=a+b", 200, "at", true, "a b", ""},
		"not Bearer":               {"application/json", `{"access_token":"at","token_type":"mac"}`, 200, "", false, "", "not Bearer"},
		"no access token":          {"application/json", `{"token_type":"Bearer"}`, 200, "", false, "", "access_token"},
		"error with status 200":    {"application/json", `{"error":"invalid_grant"}`, 200, "", false, "", "invalid_grant"},
		"error":                    {"application/json", `{"error":"invalid_grant","error_description":"code spent"}`, 400, "", false, "", "invalid_grant"},
		"not JSON":                 {"application/json", `<html>`, 200, "", false, "", "parse"},
		"server error, no details": {"text/html", `<html>oops</html>`, 502, "", false, "", "502"},
	} {
		t.Run(name, func(t *testing.T) {
			te := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			t.Cleanup(te.Close)
			reg := registry(t, fmt.Sprintf(`{"providers": [{"name": "acme", "authorize_url": "%s/a", "token_url": "%s/t",
				"client_id": "pub", "api_base_url": "https://api.example"}]}`, te.URL, te.URL), nil)
			m := manager(t, reg, nil)
			ctx := t.Context()
			raw, err := m.Connect(ctx, alice, "acme")
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(raw)
			c, err := m.Callback(ctx, alice, "acme", url.Values{"code": {"c"}, "state": {u.Query().Get("state")}})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v; want one saying %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString([]byte("pub"))) {
					t.Fatal("the error shows client credentials")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tok, err := m.Vault().Get(ctx, alice, "acme")
			if err != nil || tok.AccessToken != tc.wantAccess || tok.TokenType != "Bearer" {
				t.Fatalf("token %+v, %v", tok, err)
			}
			if (c.ExpiresAt != nil) != tc.wantExpiry {
				t.Fatalf("expiry %v; want one: %t", c.ExpiresAt, tc.wantExpiry)
			}
			if tc.wantExpiry {
				if d := time.Until(*c.ExpiresAt); d < 590*time.Second || d > 610*time.Second {
					t.Fatalf("expires in %s; want 600 s", d)
				}
			}
			if got := strings.Join(tok.Scopes, " "); tc.wantScopes != "" && got != tc.wantScopes {
				t.Fatalf("scopes %q; want %q", got, tc.wantScopes)
			}
		})
	}
}
