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

// runOAuthClient runs the TypeScript SDK client in mode against base; when
// it asks for the browser, b signs login in at the authorization URL and
// allows the client on the consent page.
func runOAuthClient(t *testing.T, node, dir, base, mode, metadataURL string, b *browser, login string) oauthClientResult {
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
			b.run("sign in as "+login+" through the client's authorization URL",
				chromedp.Navigate(msg.Authorize),
				chromedp.WaitVisible(chromedp.ID("login-"+login)),
				chromedp.Click(chromedp.ID("login-"+login)),
				chromedp.WaitVisible(chromedp.ID("allow")))
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
			res := runOAuthClient(t, node, dir, srv.URL, tc.mode, meta, b, tc.login)
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
		})
	}
}
