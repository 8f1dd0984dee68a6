package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/idflow/idflow/internal/testsvc"
)

// browser is one signed-in user's isolated browser context (own cookies).
type browser struct {
	ctx  context.Context
	base string
	t    *testing.T
}

// newBrowsers starts one headless Chromium and returns a factory of
// isolated browser contexts.
func newBrowsers(t *testing.T) func() context.Context {
	t.Helper()
	exe := testsvc.ChromiumPath(t)
	opts := append([]chromedp.ExecAllocatorOption{},
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1200, 900))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	root, cancelRoot := chromedp.NewContext(alloc)
	if err := chromedp.Do(root, chromedp.Navigate("about:blank")); err != nil {
		cancelRoot()
		cancelAlloc()
		testsvc.Unavailable(t, "chromium does not start: %v", err)
	}
	t.Cleanup(func() { cancelRoot(); cancelAlloc() })
	return func() context.Context {
		ctx, cancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		// The first action on a context opens its target, which then lives as
		// long as that action's context: run it on ctx itself, not on a
		// context with a deadline.
		if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
			t.Fatalf("open a browser context: %v", err)
		}
		return ctx
	}
}

// run performs steps in order within a deadline.
func (b *browser) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		dctx, dcancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer dcancel()
		loc, _ := chromedp.Run(dctx, chromedp.Location())
		page, _ := chromedp.Run(dctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 500) : ""`))
		b.t.Fatalf("%s: %v (at %s; page: %q)", what, err, loc, page)
	}
}

// value runs one action that answers a value.
func value[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	b.run("wait for "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
	return value(b, "read "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// signIn goes through the whole browser login: / → /auth/login → the dev
// issuer's page → pick the user → /auth/callback → the UI.
func (b *browser) signIn(login string) {
	b.t.Helper()
	b.run("sign in as "+login,
		chromedp.Navigate(b.base+"/"),
		chromedp.WaitVisible(chromedp.ID("login-"+login)),
		chromedp.Click(chromedp.ID("login-"+login)),
		chromedp.WaitVisible(chromedp.CSS(`#me dd[data-field="User"]`)))
}

func (b *browser) screenshot(name string) {
	if os.Getenv("IDFLOW_SCREENSHOTS") == "" {
		return
	}
	png := value(b, "screenshot", chromedp.FullScreenshot(100))
	dir := filepath.Join("..", "..", "docs", "screenshots")
	_ = os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// hashOf reads the id from the page's location (#/chats/<id>).
func (b *browser) hashOf(prefix string) string {
	b.t.Helper()
	loc := value(b, "location", chromedp.Location())
	i := strings.Index(loc, prefix)
	if i < 0 {
		b.t.Fatalf("location %s has no %s", loc, prefix)
	}
	return loc[i+len(prefix):]
}

// TestBrowserTwoUsers drives the web UI in real Chromium: alice and bob, in
// separate browser contexts, sign in through the dev issuer, create chats,
// documents and a run, and each sees only their own.
func TestBrowserTwoUsers(t *testing.T) {
	contexts := newBrowsers(t)
	srv := startIdflow(t, map[string]string{}, "--dev")
	alice := &browser{ctx: contexts(), base: srv.URL, t: t}
	bob := &browser{ctx: contexts(), base: srv.URL, t: t}

	alice.signIn("alice")
	if got := alice.text(`#me dd[data-field="User"]`); got != "dev-alice" {
		t.Fatalf("alice's page shows user %q", got)
	}
	if got := alice.text(`#me dd[data-field="Signed in with"]`); got != "session" {
		t.Fatalf("auth method %q, want session", got)
	}
	alice.screenshot("me")
	bob.signIn("bob")
	if got := bob.text(`#me dd[data-field="User"]`); got != "dev-bob" {
		t.Fatalf("bob's page shows user %q", got)
	}

	// A chat with a reply.
	alice.run("create chat",
		chromedp.Navigate(srv.URL+"/#/chats"),
		chromedp.WaitVisible(chromedp.ID("new-chat")),
		chromedp.SendKeys(chromedp.CSS(`#new-chat input[name=title]`), "alice secret plans"),
		chromedp.Click(chromedp.CSS(`#new-chat button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("send")),
		chromedp.SendKeys(chromedp.CSS(`#send input[name=content]`), "hello from alice"),
		chromedp.Click(chromedp.CSS(`#send button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`.msg.assistant[data-state="stored"]`)))
	if got := alice.text(".msg.assistant"); !strings.Contains(got, "hello from alice") {
		t.Fatalf("reply %q", got)
	}
	aliceChat := alice.hashOf("#/chats/")
	alice.screenshot("chat")

	// A document.
	doc := filepath.Join(t.TempDir(), "alice-notes.txt")
	if err := os.WriteFile(doc, []byte("The blue folder holds the launch plan.\n\nOnly alice knows."), 0o600); err != nil {
		t.Fatal(err)
	}
	alice.run("upload",
		chromedp.Navigate(srv.URL+"/#/documents"),
		chromedp.WaitVisible(chromedp.ID("upload")),
		chromedp.SetUploadFiles(chromedp.CSS(`#upload input[type=file]`), []string{doc}),
		chromedp.Click(chromedp.CSS(`#upload button[type=submit]`)),
		chromedp.WaitVisible(chromedp.Search(`//a[text()="alice-notes.txt"]`)))
	alice.screenshot("documents")

	// A workflow and a run watched live over the WebSocket (cookie auth).
	alice.run("create workflow",
		chromedp.Navigate(srv.URL+"/#/workflows"),
		chromedp.WaitVisible(chromedp.ID("new-workflow")),
		chromedp.SendKeys(chromedp.CSS(`#new-workflow input[name=name]`), "alice flow"),
		chromedp.Click(chromedp.CSS(`#new-workflow button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("start-run")))
	alice.screenshot("workflow")
	alice.run("start run",
		chromedp.Click(chromedp.CSS(`#start-run button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#events li[data-type="run.completed"]`)))
	aliceRun := alice.hashOf("#/runs/")
	users := value(alice, "read event owners", chromedp.Evaluate[[]string](`[...document.querySelectorAll('#events li')].map(li => li.dataset.user)`))
	if len(users) < 4 {
		t.Fatalf("only %d events on alice's page", len(users))
	}
	for _, u := range users {
		if u != "dev-alice" {
			t.Fatalf("an event on alice's page belongs to %q", u)
		}
	}
	alice.screenshot("run")

	// bob makes his own chat, document and run.
	bob.run("bob creates a chat",
		chromedp.Navigate(srv.URL+"/#/chats"),
		chromedp.WaitVisible(chromedp.ID("new-chat")),
		chromedp.SendKeys(chromedp.CSS(`#new-chat input[name=title]`), "bob roadmap"),
		chromedp.Click(chromedp.CSS(`#new-chat button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("send")))
	bobDoc := filepath.Join(t.TempDir(), "bob-notes.txt")
	if err := os.WriteFile(bobDoc, []byte("bob's quarterly numbers"), 0o600); err != nil {
		t.Fatal(err)
	}
	bob.run("bob uploads",
		chromedp.Navigate(srv.URL+"/#/documents"),
		chromedp.WaitVisible(chromedp.ID("upload")),
		chromedp.SetUploadFiles(chromedp.CSS(`#upload input[type=file]`), []string{bobDoc}),
		chromedp.Click(chromedp.CSS(`#upload button[type=submit]`)),
		chromedp.WaitVisible(chromedp.Search(`//a[text()="bob-notes.txt"]`)))
	bob.run("bob runs a workflow",
		chromedp.Navigate(srv.URL+"/#/workflows"),
		chromedp.WaitVisible(chromedp.ID("new-workflow")),
		chromedp.SendKeys(chromedp.CSS(`#new-workflow input[name=name]`), "bob flow"),
		chromedp.Click(chromedp.CSS(`#new-workflow button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("start-run")),
		chromedp.Click(chromedp.CSS(`#start-run button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#events li[data-type="run.completed"]`)))
	bobUsers := value(bob, "bob's event owners", chromedp.Evaluate[[]string](`[...document.querySelectorAll('#events li')].map(li => li.dataset.user)`))
	for _, u := range bobUsers {
		if u != "dev-bob" {
			t.Fatalf("an event on bob's page belongs to %q", u)
		}
	}
	for _, page := range []struct{ hash, wait, forbidden string }{
		{"#/chats", "#new-chat", "bob roadmap"},
		{"#/documents", "#upload", "bob-notes.txt"},
		{"#/workflows", "#new-workflow", "bob flow"},
	} {
		alice.run("alice opens "+page.hash, chromedp.Navigate(srv.URL+"/"+page.hash), chromedp.WaitVisible(chromedp.CSS(page.wait)))
		if body := value(alice, "read "+page.hash, chromedp.Text(chromedp.CSS("main"))); strings.Contains(body, page.forbidden) {
			t.Fatalf("alice's %s shows bob's %q", page.hash, page.forbidden)
		}
	}

	// bob's lists hold none of alice's things.
	for _, page := range []struct{ hash, wait, forbidden string }{
		{"#/chats", "#new-chat", "alice secret plans"},
		{"#/documents", "#upload", "alice-notes.txt"},
		{"#/workflows", "#new-workflow", "alice flow"},
		{"#/runs", "main h1", aliceRun},
	} {
		bob.run("bob opens "+page.hash, chromedp.Navigate(srv.URL+"/"+page.hash), chromedp.WaitVisible(chromedp.CSS(page.wait)))
		body := value(bob, "read "+page.hash, chromedp.Text(chromedp.CSS("main")))
		if strings.Contains(body, page.forbidden) {
			t.Fatalf("bob's %s shows alice's %q", page.hash, page.forbidden)
		}
	}
	// bob opening alice's URLs sees "not found".
	for _, u := range []string{"#/chats/" + aliceChat, "#/runs/" + aliceRun} {
		bob.run("bob opens alice's "+u, chromedp.Navigate(srv.URL+"/"+u), chromedp.WaitVisible(chromedp.ID("not-found")))
	}
	bobEvents := value(bob, "no events", chromedp.Evaluate[int](`document.querySelectorAll('#events li').length`))
	if bobEvents != 0 {
		t.Fatalf("bob's page shows %d of alice's run events", bobEvents)
	}
	bob.screenshot("not-found")

	// A forged cross-site POST from another origin carries alice's cookie but
	// not her CSRF token: refused, nothing written.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form id=f method=post action="%s/api/v1/facts" enctype="text/plain">
<input name='{"content":"forged by evil","x":"' value='"}'></form><script>document.getElementById('f').submit()</script>`, srv.URL)
	}))
	defer evil.Close()
	alice.run("visit the attacker's page", chromedp.Navigate(evil.URL), chromedp.WaitReady(chromedp.CSS("body")))
	alice.run("alice's memory", chromedp.Navigate(srv.URL+"/#/memory"), chromedp.WaitVisible(chromedp.ID("add-fact")))
	facts := value(alice, "read facts", chromedp.Text(chromedp.CSS("main")))
	if strings.Contains(facts, "forged by evil") {
		t.Fatal("a cross-site POST wrote a fact with alice's cookie")
	}
	// The forged request did reach idflow with the cookie (the two origins
	// are one site: 127.0.0.1), and was refused for its foreign Origin
	// before its missing CSRF token was even looked at (the audit trail
	// says so).
	// (A refusal before authentication has no tenant: the dev platform
	// admin reads it.)
	adminTok, err := devToken(context.Background(), srv.URL, "platform", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	_, body := srv.get(t, "/api/v1/admin/audit?limit=200", adminTok)
	if !strings.Contains(string(body), "cross-site request with an ambient credential") {
		t.Fatalf("no cross-site denial in the audit trail: %s", body)
	}

	// Logout ends the session: the cookie no longer opens the API.
	alice.run("logout", chromedp.Navigate(srv.URL+"/#/"), chromedp.WaitVisible(chromedp.ID("logout")),
		chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-alice")))
	status := value(alice, "me after logout", chromedp.Evaluate[int](`fetch('/api/v1/me', {credentials: 'same-origin'}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if status != http.StatusUnauthorized {
		t.Fatalf("after logout /api/v1/me answered %d", status)
	}
}
