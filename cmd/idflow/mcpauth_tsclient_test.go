package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/idflow/idflow/internal/testsvc"
)

// oauthClientResult is what testdata/mcpclient/oauth.mjs prints at the end.
type oauthClientResult struct {
	Mode            string   `json:"mode"`
	ClientID        string   `json:"client_id"`
	UserID          string   `json:"user_id"`
	RefreshedUserID string   `json:"refreshed_user_id"`
	Rotated         bool     `json:"rotated"`
	Tools           []string `json:"tools"`
}

// signInAtDevIssuer is the browser's sign-in at idflow's dev issuer: the
// authorization URL leads there; login's button signs in, and idflow's
// consent page follows.
func signInAtDevIssuer(b *browser, authorize, login string) {
	b.run("sign in as "+login+" through the client's authorization URL",
		chromedp.Navigate(authorize),
		chromedp.WaitVisible(chromedp.ID("login-"+login)),
		chromedp.Click(chromedp.ID("login-"+login)),
		chromedp.WaitVisible(chromedp.ID("allow")))
}

// runOAuthClient runs the TypeScript SDK client in mode against base; when
// it asks for the browser, b signs login in at the authorization URL
// (signIn: up to idflow's consent page) and allows the client there.
func runOAuthClient(t *testing.T, node, dir, base, mode, metadataURL string, b *browser, login string, signIn func(b *browser, authorize, login string)) oauthClientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	args := []string{filepath.Join(dir, "oauth.mjs"), base + "/mcp", mode}
	if metadataURL != "" {
		args = append(args, metadataURL)
	}
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = dir
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	authorized := false
	for lines.Scan() {
		var msg struct {
			Authorize string             `json:"authorize"`
			Result    *oauthClientResult `json:"result"`
			Error     string             `json:"error"`
		}
		if err := json.Unmarshal(lines.Bytes(), &msg); err != nil {
			t.Fatalf("oauth.mjs printed %q: %v", lines.Text(), err)
		}
		switch {
		case msg.Authorize != "":
			if !strings.HasPrefix(msg.Authorize, base+"/oauth/authorize?") {
				t.Fatalf("the client was sent to %q; want idflow's authorization endpoint", msg.Authorize)
			}
			authorized = true
			signIn(b, msg.Authorize, login)
			if host := b.text("#redirect-host"); !strings.HasPrefix(host, "127.0.0.1:") {
				t.Fatalf("the consent page names the redirect host %q; want the client's loopback callback", host)
			}
			b.run("allow", chromedp.Click(chromedp.ID("allow")))
		case msg.Error != "":
			t.Fatalf("oauth.mjs: %s\nstderr: %s", msg.Error, stderr.String())
		case msg.Result != nil:
			if !authorized {
				t.Fatal("the client got tokens without the browser step")
			}
			return *msg.Result
		}
	}
	t.Fatalf("oauth.mjs ended without a result: %v\nstderr: %s", lines.Err(), stderr.String())
	return oauthClientResult{}
}

// devUserID is the user id the dev issuer gives login.
func devUserID(t *testing.T, base, login string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := devToken(ctx, base, login, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	var me struct {
		UserID string `json:"user_id"`
	}
	rawDo(t, "GET", base+"/api/v1/me", http.Header{"Authorization": {"Bearer " + tok}}, "").JSON(t, &me)
	return me.UserID
}

// TestMCPAuthTypeScriptClient: an MCP client signs in by itself. The official
// TypeScript SDK's own OAuth client, pointed at /mcp of `idflow serve
// --dev` with no configuration and no token, discovers idflow, registers
// (DCR) or names itself by its metadata document (CIMD), sends the user
// through the browser login and the consent page in real Chromium, calls
// whoami as that user, and refreshes its tokens (rotated). alice and bob
// get their own identities.
func TestMCPAuthTypeScriptClient(t *testing.T) {
	node := testsvc.Node(t)
	dir := testsvc.RepoDir(t, "testdata/mcpclient")
	testsvc.NPMInstall(t, dir)
	contexts := newBrowsers(t)
	metadataURL, caFile := cimdServer(t, "http://127.0.0.1/callback")
	srv := startIdflow(t, map[string]string{"IDFLOW_MCP_CIMD_CA_FILE": caFile, "IDFLOW_LOG_LEVEL": "warn"}, "--dev")
	ids := map[string]string{"alice": devUserID(t, srv.URL, "alice"), "bob": devUserID(t, srv.URL, "bob")}
	if ids["alice"] == ids["bob"] {
		t.Fatalf("the dev users share an id")
	}
	for _, tc := range []struct{ mode, login string }{{"dcr", "alice"}, {"dcr", "bob"}, {"cimd", "alice"}, {"cimd", "bob"}} {
		t.Run(tc.mode+"-"+tc.login, func(t *testing.T) {
			b := &browser{ctx: contexts(), base: srv.URL, t: t}
			meta := ""
			if tc.mode == "cimd" {
				meta = metadataURL
			}
			res := runOAuthClient(t, node, dir, srv.URL, tc.mode, meta, b, tc.login, signInAtDevIssuer)
			if res.UserID != ids[tc.login] || res.RefreshedUserID != ids[tc.login] {
				t.Fatalf("whoami through the TypeScript client: %q, after refresh %q; want %s's %q", res.UserID, res.RefreshedUserID, tc.login, ids[tc.login])
			}
			if !res.Rotated {
				t.Fatal("the SDK's refresh did not rotate the refresh token")
			}
			if tc.mode == "cimd" && res.ClientID != metadataURL {
				t.Fatalf("client id %q; want the metadata document's URL", res.ClientID)
			}
			if tc.mode == "dcr" && !strings.HasPrefix(res.ClientID, "mcpc_") {
				t.Fatalf("client id %q; want a registered one", res.ClientID)
			}
			if !slices.Contains(res.Tools, "whoami") || !slices.Contains(res.Tools, "list_connections") {
				t.Fatalf("tools %v", res.Tools)
			}
			if tc.mode == "dcr" {
				revokeGrantInUI(t, b, srv.URL, tc.login, res.ClientID)
			}
		})
	}
}

// TestMCPAuthTypeScriptClientOIDCProvider: the same sign-in with idflow in
// production mode, its browser login backed by an independent OpenID
// provider (npm oidc-provider) as the upstream IdP: the TypeScript SDK
// client registers, Chromium signs the user in at the provider and allows
// the client at idflow, and whoami answers the provider's subject — alice
// and bob each their own.
func TestMCPAuthTypeScriptClientOIDCProvider(t *testing.T) {
	node := testsvc.Node(t)
	dir := testsvc.RepoDir(t, "testdata/mcpclient")
	testsvc.NPMInstall(t, dir)
	const audience = "https://api.idflow.test"
	addr := freeAddr(t)
	public := "http://" + addr
	op := testsvc.StartOIDCProvider(t, testsvc.OIDCProviderOptions{Audiences: []string{audience}, RedirectURIs: []string{public + "/auth/callback"}})
	contexts := newBrowsers(t)
	vaultKey, assertionKey := deployKeys(t)
	srv := startIdflow(t, map[string]string{
		"IDFLOW_LISTEN": addr, "IDFLOW_PUBLIC_URL": public,
		"IDFLOW_VAULT_KEY": vaultKey, "IDFLOW_ASSERTION_KEY": assertionKey,
		"IDFLOW_OIDC_ISSUER": op.Issuer, "IDFLOW_OIDC_AUDIENCE": audience,
		"IDFLOW_OIDC_CLIENT_ID": testsvc.OIDCWebClientID, "IDFLOW_OIDC_CLIENT_SECRET": testsvc.OIDCWebClientSecret,
		"IDFLOW_MCP_AUTH": "idflow", "IDFLOW_LOG_LEVEL": "warn",
	})
	atProvider := func(b *browser, authorize, login string) {
		b.run("sign in as "+login+" at the OpenID provider",
			chromedp.Navigate(authorize),
			chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)),
			chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), login),
			chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "any"),
			chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
			// The login form's own button must not pass for the next
			// page's: wait for the form to be gone first.
			chromedp.WaitNotPresent(chromedp.CSS(`input[name="login"]`)),
			chromedp.WaitVisible(chromedp.CSS(`button[type="submit"], #allow`)))
		// The provider asks its own consent for idflow's web client once
		// per account, then sends the browser back to idflow's.
		if !value(b, "idflow's consent page?", chromedp.Evaluate[bool](`document.getElementById("allow") !== null`)) {
			b.run("the provider's consent", chromedp.Click(chromedp.CSS(`button[type="submit"]`)), chromedp.WaitVisible(chromedp.ID("allow")))
		}
	}
	seen := map[string]string{}
	for _, login := range []string{"alice", "bob"} {
		t.Run(login, func(t *testing.T) {
			b := &browser{ctx: contexts(), base: srv.URL, t: t}
			res := runOAuthClient(t, node, dir, srv.URL, "dcr", "", b, login, atProvider)
			if res.UserID != login || res.RefreshedUserID != login {
				t.Fatalf("whoami through the TypeScript client: %q, after refresh %q; want the provider's subject %q", res.UserID, res.RefreshedUserID, login)
			}
			seen[login] = res.UserID
		})
	}
	if seen["alice"] == "" || seen["alice"] == seen["bob"] {
		t.Fatalf("alice and bob: %v; want two identities", seen)
	}
}

// revokeGrantInUI: on the Tokens page, the signed-in user sees the client
// they just allowed and revokes it; the API then lists no grant of theirs
// for it.
func revokeGrantInUI(t *testing.T, b *browser, base, login, clientID string) {
	t.Helper()
	sel := `#grants li`
	b.run("open the Tokens page", chromedp.Navigate(base+"/#/tokens"), chromedp.WaitVisible(chromedp.CSS(sel)))
	if txt := b.text(sel); !strings.Contains(txt, "127.0.0.1") {
		t.Fatalf("the allowed client reads %q; want its redirect host", txt)
	}
	b.run("revoke it", chromedp.Click(chromedp.CSS(sel+` button.danger`)), chromedp.WaitVisible(chromedp.CSS(`#grants .empty`)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := devToken(ctx, base, login, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	var grants struct {
		Items []struct {
			ClientID string `json:"client_id"`
		} `json:"items"`
	}
	rawDo(t, "GET", base+"/api/v1/oauth/grants", http.Header{"Authorization": {"Bearer " + tok}}, "").JSON(t, &grants)
	for _, g := range grants.Items {
		if g.ClientID == clientID {
			t.Fatalf("%s's grant of %s is still listed after Revoke in the UI", login, clientID)
		}
	}
}
