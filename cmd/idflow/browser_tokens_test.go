package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserPersonalTokens drives the tokens page in real Chromium: alice
// creates a token and sees it once, it works as her from outside the
// browser, the list shows it (never the token) to her and not to bob, and
// revoking it in the page stops it at once.
func TestBrowserPersonalTokens(t *testing.T) {
	contexts := newBrowsers(t)
	srv := startIdflow(t, map[string]string{}, "--dev")
	alice := &browser{ctx: contexts(), base: srv.URL, t: t}
	bob := &browser{ctx: contexts(), base: srv.URL, t: t}
	alice.signIn("alice")
	bob.signIn("bob")

	alice.run("create a token",
		chromedp.Navigate(srv.URL+"/#/tokens"),
		chromedp.WaitVisible(chromedp.ID("create-token")),
		chromedp.SendKeys(chromedp.CSS(`#create-token input[name=tokenname]`), "laptop script"),
		chromedp.Click(chromedp.CSS(`#create-token input[name=scope-mcp]`)),
		chromedp.Click(chromedp.CSS(`#create-token button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("new-token")))
	token := alice.text("#new-token")
	if !patTokenRE.MatchString(token) {
		t.Fatalf("the page shows %q as the token", token)
	}
	alice.screenshot("tokens")
	me := func() (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/me", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			UserID string `json:"user_id"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.UserID
	}
	if status, user := me(); status != http.StatusOK || user != "dev-alice" {
		t.Fatalf("the token answers %d as %q; want 200 as dev-alice", status, user)
	}

	// Shown once: a fresh visit lists it, without the token.
	alice.run("reload the tokens page",
		chromedp.Navigate(srv.URL+"/#/"), chromedp.WaitVisible(chromedp.CSS(`#me`)),
		chromedp.Navigate(srv.URL+"/#/tokens"),
		chromedp.WaitVisible(chromedp.CSS(`#tokens li[data-token]`)))
	page := alice.text("main")
	if strings.Contains(page, token) || strings.Contains(page, token[8:20]) {
		t.Fatal("the tokens page shows the token again")
	}
	if list := alice.text("#tokens"); !strings.Contains(list, "laptop script") || !strings.Contains(list, "read mcp") {
		t.Fatalf("alice's list: %q", list)
	}
	bob.run("bob's tokens page", chromedp.Navigate(srv.URL+"/#/tokens"), chromedp.WaitVisible(chromedp.ID("tokens")))
	if list := bob.text("#tokens"); strings.Contains(list, "laptop script") {
		t.Fatalf("bob sees alice's token: %q", list)
	}

	alice.run("revoke",
		chromedp.Click(chromedp.CSS(`#tokens li[data-token] button.danger`)),
		chromedp.WaitVisible(chromedp.CSS(`#tokens p.empty`)))
	if status, _ := me(); status != http.StatusUnauthorized {
		t.Fatalf("the revoked token answers %d; want 401", status)
	}
}
