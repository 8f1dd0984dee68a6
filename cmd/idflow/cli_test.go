package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idflow/idflow/devidp"
	"github.com/idflow/idflow/internal/cliauth"
	"github.com/idflow/idflow/internal/testsvc"
)

// cliWorld is a cli with test doubles: its own config dir, a settable
// clock, a browser the test plays, and recorded pauses.
type cliWorld struct {
	c              *cli
	dir            string
	stdout, stderr *syncBuffer
	offset         atomic.Int64 // added to the real clock
	mu             sync.Mutex
	sleeps         []time.Duration
	onSleep        func(ctx context.Context) // runs in each pause (the user acting meanwhile)
}

func newCLIWorld(t *testing.T, browser func(ctx context.Context, u string) error) *cliWorld {
	t.Helper()
	w := &cliWorld{dir: filepath.Join(t.TempDir(), "config"), stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	w.c = newCLI(envOf(map[string]string{"IDFLOW_CONFIG_DIR": w.dir}), w.stdout, w.stderr)
	w.c.openBrowser = browser
	w.c.oauth.Now = func() time.Time { return time.Now().Add(time.Duration(w.offset.Load())) }
	w.c.oauth.Sleep = func(ctx context.Context, d time.Duration) error {
		w.mu.Lock()
		w.sleeps = append(w.sleeps, d)
		w.mu.Unlock()
		if w.onSleep != nil {
			w.onSleep(ctx)
		}
		return ctx.Err()
	}
	return w
}

// loadCredentials opens the world's credentials file.
func (w *cliWorld) loadCredentials() (cliauth.Credentials, error) {
	return cliauth.Store{Dir: w.dir}.Load()
}

func (w *cliWorld) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	before := len(w.stdout.String())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := w.c.cmd(ctx, args[0], args[1:])
	return w.stdout.String()[before:], err
}

// followToLoopback GETs the loopback redirect the provider sent the browser
// to, as the browser would, and requires the CLI's success page.
func followToLoopback(t testing.TB, loc *url.URL) {
	t.Helper()
	if loc == nil || loc.Hostname() != "127.0.0.1" || loc.Path != "/callback" {
		t.Errorf("the provider redirected to %v, want the CLI's loopback listener", loc)
		return
	}
	resp, err := http.Get(loc.String())
	if err != nil {
		t.Errorf("loopback callback: %v", err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Signed in") {
		t.Errorf("loopback callback: %d %s", resp.StatusCode, body)
	}
}

// refreshWith redeems a refresh token of the dev issuer's public client.
func refreshWith(t *testing.T, tokenURL, rt string) int {
	t.Helper()
	resp, err := http.PostForm(tokenURL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt},
		"client_id": {devidp.PublicClientID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestCLILoginDev: `idflow login` against the dev server (the test plays
// the browser at the dev issuer), then whoami, token (refreshed with
// rotation when < 5 minutes remain), logout (revoked, file deleted).
func TestCLILoginDev(t *testing.T) {
	t.Parallel()
	srv := startIdflow(t, map[string]string{"IDFLOW_LOG_LEVEL": "error"}, "--dev")
	var opened atomic.Int32
	w := newCLIWorld(t, func(ctx context.Context, u string) error {
		opened.Add(1)
		followToLoopback(t, devBrowserPick(t, u, "alice"))
		return nil
	})
	if _, err := w.run(t, "login", "--server", srv.URL); err != nil {
		t.Fatalf("login: %v\n%s", err, w.stderr)
	}
	if opened.Load() != 1 || !strings.Contains(w.stderr.String(), srv.URL+"/dev/idp/authorize?") {
		t.Fatalf("the browser was opened %d times; stderr:\n%s", opened.Load(), w.stderr)
	}

	// Stored sealed, 0600, in a 0700 directory.
	cr, err := w.loadCredentials()
	if err != nil {
		t.Fatal(err)
	}
	if cr.AccessToken == "" || cr.RefreshToken == "" || cr.Server != srv.URL || cr.ClientID != devidp.PublicClientID {
		t.Fatalf("stored credentials: server %q client %q", cr.Server, cr.ClientID)
	}
	for name, want := range map[string]os.FileMode{"": 0o700, cliauth.CredentialsFile: 0o600, cliauth.KeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(w.dir, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: mode %v, %v; want %v", filepath.Join(w.dir, name), fi.Mode().Perm(), err, want)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(w.dir, cliauth.CredentialsFile))
	for _, secret := range []string{cr.AccessToken, cr.RefreshToken, cr.AccessToken[len(cr.AccessToken)-20:]} {
		if strings.Contains(string(raw), secret) {
			t.Fatal("the credentials file holds a token in the clear")
		}
	}

	out, err := w.run(t, "whoami")
	if err != nil {
		t.Fatal(err)
	}
	var me meResponse
	if err := json.Unmarshal([]byte(out), &me); err != nil || me.UserID != "dev-alice" || me.AuthMethod != "bearer" {
		t.Fatalf("whoami: %v\n%s", err, out)
	}
	out, err = w.run(t, "token")
	if err != nil || strings.TrimSpace(out) != cr.AccessToken {
		t.Fatalf("token with an hour left: %v; want the stored token unchanged", err)
	}

	// 4 minutes left: refreshed, the rotated refresh token stored, the old
	// one spent.
	w.offset.Store(int64(56 * time.Minute))
	out, err = w.run(t, "token")
	fresh := strings.TrimSpace(out)
	if err != nil || fresh == "" || fresh == cr.AccessToken {
		t.Fatalf("token with 4 minutes left: %v; want a new token", err)
	}
	if got := srv.me(t, fresh); got.UserID != "dev-alice" {
		t.Fatalf("the refreshed token belongs to %q", got.UserID)
	}
	cr2, _ := w.loadCredentials()
	if cr2.AccessToken != fresh || cr2.RefreshToken == cr.RefreshToken || !cr2.Expiry.After(cr.Expiry) {
		t.Fatal("the refreshed tokens were not stored")
	}
	if status := refreshWith(t, cr.TokenEndpoint, cr.RefreshToken); status != http.StatusBadRequest {
		t.Fatalf("the old refresh token still works (%d)", status)
	}

	// Through run(), as the binary does: the same stored credentials.
	var stdout, stderr syncBuffer
	if err := run(context.Background(), []string{"token"}, envOf(map[string]string{"IDFLOW_CONFIG_DIR": w.dir}), &stdout, &stderr); err != nil ||
		strings.TrimSpace(stdout.String()) != fresh {
		t.Fatalf("idflow token through run(): %v", err)
	}

	if _, err := w.run(t, "logout"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(w.dir, cliauth.CredentialsFile)); !os.IsNotExist(err) {
		t.Fatalf("credentials after logout: %v", err)
	}
	if status := refreshWith(t, cr2.TokenEndpoint, cr2.RefreshToken); status != http.StatusBadRequest {
		t.Fatalf("the refresh token survived logout (%d)", status)
	}
	if _, err := w.run(t, "whoami"); !errors.Is(err, cliauth.ErrNotLoggedIn) {
		t.Fatalf("whoami after logout: %v", err)
	}
	if _, err := w.run(t, "logout"); err != nil {
		t.Fatalf("a second logout: %v", err)
	}
	// The dev issuer offers no device flow: --device says so.
	if _, err := w.run(t, "login", "--server", srv.URL, "--device"); err == nil || !strings.Contains(err.Error(), "device") {
		t.Fatalf("--device against the dev issuer: %v", err)
	}
}

// TestCLILoopbackChecksState: a redirect to the loopback listener with the
// wrong state is refused and does not end the login; a refusal with the
// right state does.
func TestCLILoopbackChecksState(t *testing.T) {
	t.Parallel()
	srv := startIdflow(t, map[string]string{"IDFLOW_LOG_LEVEL": "error"}, "--dev")
	w := newCLIWorld(t, func(ctx context.Context, u string) error {
		loc := devBrowserPick(t, u, "alice")
		forged := *loc
		q := forged.Query()
		q.Set("state", "forged-state")
		q.Set("code", "attacker-code")
		forged.RawQuery = q.Encode()
		resp, err := http.Get(forged.String())
		if err != nil {
			t.Error(err)
			return nil
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("a forged state: %d, want 400", resp.StatusCode)
		}
		followToLoopback(t, loc)
		return nil
	})
	if _, err := w.run(t, "login", "--server", srv.URL); err != nil {
		t.Fatalf("login: %v", err)
	}
	if out, err := w.run(t, "whoami"); err != nil || !strings.Contains(out, `"dev-alice"`) {
		t.Fatalf("whoami: %v %s", err, out)
	}

	denied := newCLIWorld(t, func(ctx context.Context, u string) error {
		au, _ := url.Parse(u)
		redirect, _ := url.Parse(au.Query().Get("redirect_uri"))
		redirect.RawQuery = url.Values{"state": {au.Query().Get("state")}, "error": {"access_denied"}}.Encode()
		resp, err := http.Get(redirect.String())
		if err == nil {
			resp.Body.Close()
		}
		return nil
	})
	if _, err := denied.run(t, "login", "--server", srv.URL); err == nil || !strings.Contains(err.Error(), "access_denied") {
		t.Fatalf("a refused sign-in: %v", err)
	}
	if _, err := denied.loadCredentials(); !errors.Is(err, cliauth.ErrNotLoggedIn) {
		t.Fatalf("a refused sign-in stored credentials: %v", err)
	}
}

var deviceURIRe = regexp.MustCompile(`\(or open (\S+)\)`)

// TestCLIWithOIDCProvider: `idflow login` (loopback, then --device)
// against an independent OpenID provider, whose tokens idflow accepts in
// production mode; logout revokes at the provider.
func TestCLIWithOIDCProvider(t *testing.T) {
	t.Parallel()
	const audience = "https://api.idflow.test"
	op := testsvc.StartOIDCProvider(t, testsvc.OIDCProviderOptions{Audiences: []string{audience}})
	srv := startIdflow(t, map[string]string{"IDFLOW_OIDC_ISSUER": op.Issuer, "IDFLOW_OIDC_AUDIENCE": audience, "IDFLOW_LOG_LEVEL": "error"})
	args := []string{"--server", srv.URL, "--issuer", op.Issuer, "--client-id", testsvc.OIDCCLIClientID, "--resource", audience}

	t.Run("loopback", func(t *testing.T) {
		w := newCLIWorld(t, func(ctx context.Context, u string) error {
			followToLoopback(t, op.Browse(t, u, "alice"))
			return nil
		})
		if _, err := w.run(t, append([]string{"login"}, args...)...); err != nil {
			t.Fatalf("login: %v\n%s", err, w.stderr)
		}
		out, err := w.run(t, "whoami")
		if err != nil || !strings.Contains(out, `"user_id": "alice"`) {
			t.Fatalf("whoami: %v\n%s", err, out)
		}
	})

	t.Run("device", func(t *testing.T) {
		w := newCLIWorld(t, nil)
		approved := false
		w.onSleep = func(ctx context.Context) {
			if approved {
				return
			}
			m := deviceURIRe.FindStringSubmatch(w.stderr.String())
			if m == nil {
				t.Errorf("no verification URI printed:\n%s", w.stderr)
				return
			}
			if end := op.Browse(t, m[1], "bob"); end != nil {
				t.Errorf("the device flow ended at %v, want the success page", end)
			}
			approved = true
		}
		if _, err := w.run(t, append([]string{"login", "--device"}, args...)...); err != nil {
			t.Fatalf("login --device: %v\n%s", err, w.stderr)
		}
		if !regexp.MustCompile(`enter the code\s+\S+`).MatchString(w.stderr.String()) {
			t.Fatalf("no user code printed:\n%s", w.stderr)
		}
		if len(w.sleeps) != 1 || w.sleeps[0] != 5*time.Second {
			t.Fatalf("pauses %v; want one of the default 5 s interval before the first poll", w.sleeps)
		}
		out, err := w.run(t, "whoami")
		if err != nil || !strings.Contains(out, `"user_id": "bob"`) {
			t.Fatalf("whoami: %v\n%s", err, out)
		}
		cr, _ := w.loadCredentials()
		if cr.RefreshToken == "" || cr.RevocationEndpoint == "" {
			t.Fatal("no refresh token or revocation endpoint stored")
		}
		if !op.Active(t, cr.RefreshToken, testsvc.OIDCWebClientID, testsvc.OIDCWebClientSecret) {
			t.Fatal("the stored refresh token is not active")
		}
		// Refresh with rotation against the provider.
		w.offset.Store(int64(56 * time.Minute))
		if out, err := w.run(t, "token"); err != nil || strings.TrimSpace(out) == cr.AccessToken {
			t.Fatalf("token with 4 minutes left: %v", err)
		}
		cr2, _ := w.loadCredentials()
		if cr2.RefreshToken == cr.RefreshToken || op.Active(t, cr.RefreshToken, testsvc.OIDCWebClientID, testsvc.OIDCWebClientSecret) {
			t.Fatal("the refresh token was not rotated")
		}
		if _, err := w.run(t, "logout"); err != nil {
			t.Fatal(err)
		}
		if op.Active(t, cr2.RefreshToken, testsvc.OIDCWebClientID, testsvc.OIDCWebClientSecret) {
			t.Fatal("logout did not revoke the refresh token")
		}
	})
}

// TestCLIDevicePolling: the poll loop waits interval before each poll, and
// 5 s more after each slow_down (RFC 8628 §3.5); denial and expiry end it.
func TestCLIDevicePolling(t *testing.T) {
	t.Parallel()
	var answers []string
	var mu sync.Mutex
	var polls atomic.Int32
	mux := http.NewServeMux()
	var base string
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": base, "token_endpoint": base + "/token",
			"device_authorization_endpoint": base + "/device"})
	})
	mux.HandleFunc("POST /device", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if r.PostForm.Get("client_id") != "cli" || r.PostForm.Get("resource") != "https://api" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"device_code": "dc", "user_code": "ABCD-EFGH",
			"verification_uri": base + "/activate", "expires_in": 600, "interval": 3})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		polls.Add(1)
		if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code" || r.PostForm.Get("device_code") != "dc" {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		mu.Lock()
		next := answers[0]
		answers = answers[1:]
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if next != "ok" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":%q}`, next)
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"at","refresh_token":"rt","token_type":"Bearer","expires_in":3600}`))
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	base = ts.URL

	for _, c := range []struct {
		answers []string
		sleeps  []time.Duration
		err     string
	}{
		{[]string{"authorization_pending", "slow_down", "authorization_pending", "slow_down", "ok"},
			[]time.Duration{3 * time.Second, 3 * time.Second, 8 * time.Second, 8 * time.Second, 13 * time.Second}, ""},
		{[]string{"authorization_pending", "access_denied"}, []time.Duration{3 * time.Second, 3 * time.Second}, "denied"},
		{[]string{"expired_token"}, []time.Duration{3 * time.Second}, "expired"},
	} {
		mu.Lock()
		answers = append([]string{}, c.answers...)
		mu.Unlock()
		w := newCLIWorld(t, nil)
		_, err := w.run(t, "login", "--device", "--issuer", base, "--client-id", "cli", "--resource", "https://api", "--server", "http://127.0.0.1:1")
		if (c.err == "" && err != nil) || (c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err))) {
			t.Fatalf("answers %v: %v; want %q", c.answers, err, c.err)
		}
		if fmt.Sprint(w.sleeps) != fmt.Sprint(c.sleeps) {
			t.Fatalf("answers %v: pauses %v, want %v", c.answers, w.sleeps, c.sleeps)
		}
		if !strings.Contains(w.stderr.String(), "ABCD-EFGH") || !strings.Contains(w.stderr.String(), base+"/activate") {
			t.Fatalf("the user code and URI were not printed:\n%s", w.stderr)
		}
		if cr, err := w.loadCredentials(); (c.err == "") != (err == nil) || (err == nil && cr.AccessToken != "at") {
			t.Fatalf("answers %v: stored %v", c.answers, err)
		}
	}
	if polls.Load() != 8 {
		t.Fatalf("%d polls, want 8", polls.Load())
	}
}
