package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Chromium resolves every *.localhost name to loopback (RFC 6761) and
// treats those origins as secure contexts, so sibling origins of one site
// can be tried on one machine: idflow at app.idflow.localhost, the attacker
// at evil.idflow.localhost. The idflow server runs in this process and
// calls its own dev issuer at its public URL, so the test binary's default
// HTTP transport resolves *.localhost the same way (Go's resolver asks DNS).
func init() {
	tr := http.DefaultTransport.(*http.Transport)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil && strings.HasSuffix(host, ".localhost") {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return dial(ctx, network, addr)
	}
}

// signInVia follows a sign-in that /auth/login?return_to=returnTo starts,
// picks login at the dev issuer, and answers where the browser ends up:
// idflow's page (#logout) or the attacker's (#evil).
func (b *browser) signInVia(returnTo, login string) string {
	b.t.Helper()
	b.run("sign in with return_to "+fmt.Sprintf("%q", returnTo),
		chromedp.Navigate(b.base+"/auth/login?return_to="+url.QueryEscape(returnTo)),
		chromedp.WaitVisible(chromedp.ID("login-"+login)),
		chromedp.Click(chromedp.ID("login-"+login)),
		chromedp.WaitVisible(chromedp.CSS(`#logout, #evil`)))
	return value(b, "location", chromedp.Location())
}

// TestBrowserReturnToStaysOnOrigin: after sign-in, Chromium follows
// return_to. Every trick that a browser turns into another origin — "//",
// backslashes, a tab or newline it strips, an absolute or scheme-relative
// URL, userinfo — ends on idflow's own home page; a plain path is kept.
func TestBrowserReturnToStaysOnOrigin(t *testing.T) {
	contexts := newBrowsers(t)
	srv := startIdflow(t, map[string]string{}, "--dev")
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><h1 id=evil>phished</h1>`)
	}))
	defer evil.Close()
	eh := evil.Listener.Addr().String() // 127.0.0.1:port: another origin than idflow's
	alice := &browser{ctx: contexts(), base: srv.URL, t: t}

	if got := alice.signInVia("/#/documents", "alice"); got != srv.URL+"/#/documents" {
		t.Fatalf("a plain path was not kept: ended on %s", got)
	}
	for _, trick := range []string{
		"//" + eh + "/",
		"///" + eh + "/",
		"/\\" + eh + "/",
		"\\/" + eh + "/",
		"/\t/" + eh + "/",
		"/\n/" + eh + "/",
		"\t//" + eh + "/",
		"/%2F/" + eh + "/",
		"/.//" + eh + "/",
		"http://" + eh + "/",
		"http:" + eh + "/",
		"//alice@" + eh + "/",
		"/\u3000/" + eh + "/",
		"javascript:location='http://" + eh + "/'",
	} {
		got := alice.signInVia(trick, "alice")
		if got != srv.URL+"/" {
			t.Errorf("return_to %q: the browser ended on %s, want %s/", trick, got, srv.URL)
		}
	}
	if got := alice.text(`#me dd[data-field="User"]`); got != "dev-alice" {
		t.Fatalf("signed in as %q", got)
	}
}

// attackerPending is a sign-in the attacker started and completed at the
// issuer as themselves, without calling the callback: plant the login
// cookie in a victim's browser, send the victim to the callback, and the
// victim is signed in as the attacker (login CSRF) — unless the cookie
// cannot be planted.
type attackerPending struct {
	loginCookie *http.Cookie // idflow's pending-login cookie
	callback    string       // /auth/callback?code=…&state=… for the attacker's account
}

// startAttackerSignIn runs the first half of a sign-in as login with a
// plain HTTP client (idflow's Secure cookies are handled by hand: Go's
// cookie jar keeps them from http URLs).
func startAttackerSignIn(t *testing.T, base, login string) attackerPending {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(base + "/auth/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var pending attackerPending
	for _, ck := range resp.Cookies() {
		if strings.HasSuffix(ck.Name, "idflow_login") {
			pending.loginCookie = ck
		}
	}
	authz, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || pending.loginCookie == nil {
		t.Fatalf("/auth/login: %s, cookies %v", resp.Status, resp.Cookies())
	}
	form := authz.Query()
	form.Set("login", login)
	resp, err = c.PostForm(authz.Scheme+"://"+authz.Host+authz.Path, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	pending.callback = resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.Contains(pending.callback, "/auth/callback?") {
		t.Fatalf("dev issuer authorize: %s, Location %q", resp.Status, pending.callback)
	}
	return pending
}

// finish calls the callback with the pending cookie and answers the
// session cookie idflow sets.
func (p attackerPending) finish(t *testing.T) *http.Cookie {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.callback, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: p.loginCookie.Name, Value: p.loginCookie.Value})
	c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if strings.HasSuffix(ck.Name, "idflow_session") && ck.Value != "" {
			return ck
		}
	}
	t.Fatalf("/auth/callback: %s and no session cookie", resp.Status)
	return nil
}

// TestBrowserSiblingCannotPlantSession: idflow at
// http://app.idflow.localhost (not plain-http loopback) names every cookie
// __Host-. A page on the sibling origin evil.idflow.localhost plants the
// attacker's own session and pending-login cookies for the whole site
// (Domain=idflow.localhost), under the bare names and the __Host- ones,
// then sends the victim to the callback of the attacker's sign-in. The
// bare cookies do land in the victim's browser — and idflow never reads
// them; the __Host- ones are refused by the browser. A signed-in victim
// stays themself, a signed-out one stays signed out; never the attacker.
func TestBrowserSiblingCannotPlantSession(t *testing.T) {
	contexts := newBrowsers(t)
	listen := freeAddr(t)
	_, port, _ := net.SplitHostPort(listen)
	app := "http://app.idflow.localhost:" + port
	// No downstream provider: the dev one wants a loopback or https URL.
	providers := filepath.Join(t.TempDir(), "providers.json")
	if err := os.WriteFile(providers, []byte(`{"providers": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	startIdflow(t, map[string]string{"IDFLOW_LISTEN": listen, "IDFLOW_PUBLIC_URL": app, "IDFLOW_PROVIDERS_FILE": providers}, "--dev")

	// The attacker (bob) holds a session of their own and a sign-in that
	// waits only for its callback.
	bobSession := startAttackerSignIn(t, app, "bob").finish(t)
	if bobSession.Name != "__Host-idflow_session" || !bobSession.Secure || bobSession.Path != "/" || bobSession.Domain != "" {
		t.Fatalf("idflow set %+v; want __Host-idflow_session, Secure, Path=/, no Domain", bobSession)
	}

	// Each visit to the attacker's page plants the next pending sign-in
	// (an authorization code is good for one callback).
	pendings := make(chan attackerPending, 1)
	evilSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pending := <-pendings
		for _, c := range []string{
			"idflow_session=" + bobSession.Value + "; Domain=idflow.localhost; Path=/",
			"idflow_login=" + pending.loginCookie.Value + "; Domain=idflow.localhost; Path=/",
			"__Host-idflow_session=" + bobSession.Value + "; Domain=idflow.localhost; Path=/; Secure",
			"__Host-idflow_login=" + pending.loginCookie.Value + "; Domain=idflow.localhost; Path=/; Secure",
			"__Secure-idflow_session=" + bobSession.Value + "; Domain=idflow.localhost; Path=/; Secure",
			"__Host-idflow_session=" + bobSession.Value + "; Path=/; Secure", // host-only: evil's own
		} {
			w.Header().Add("Set-Cookie", c)
		}
		http.Redirect(w, r, pending.callback, http.StatusFound)
	}))
	defer evilSrv.Close()
	nextPending := func() attackerPending {
		p := startAttackerSignIn(t, app, "bob")
		if !strings.HasPrefix(p.loginCookie.Name, "__Host-") || !p.loginCookie.Secure || p.loginCookie.Path != "/" {
			t.Fatalf("idflow's pending-login cookie is %+v, not __Host-", p.loginCookie)
		}
		return p
	}
	_, evilPort, _ := net.SplitHostPort(evilSrv.Listener.Addr().String())
	evil := "http://evil.idflow.localhost:" + evilPort + "/plant"

	whoAmI := func(b *browser) (int, string) {
		type me struct {
			Status int    `json:"status"`
			User   string `json:"user"`
		}
		m := value(b, "who am I", chromedp.Evaluate[me](`fetch('/api/v1/me', {credentials: 'same-origin'})
			.then(r => r.json().then(j => ({status: r.status, user: j.user_id || ''})))`, chromedp.EvalAwaitPromise))
		return m.Status, m.User
	}
	cookies := func(b *browser) map[string][]*network.Cookie {
		res := value(b, "cookies", func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
			return cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{app + "/"}})
		})
		out := map[string][]*network.Cookie{}
		for _, c := range res.Cookies {
			out[c.Name] = append(out[c.Name], c)
		}
		return out
	}

	// A signed-in victim.
	alice := &browser{ctx: contexts(), base: app, t: t}
	alice.signIn("alice")
	pendings <- nextPending()
	alice.run("visit the sibling origin", chromedp.Navigate(evil), chromedp.WaitReady(chromedp.CSS("body")))
	// The callback refuses the planted sign-in and the browser stays on
	// its answer; had idflow taken the planted cookie, it would have
	// signed alice in as bob and sent her on.
	if loc := value(alice, "location", chromedp.Location()); !strings.HasPrefix(loc, app+"/auth/callback?") {
		t.Fatalf("idflow finished the sign-in the sibling planted: the browser went on to %s", loc)
	}
	jar := cookies(alice)
	if len(jar["idflow_session"]) != 1 || jar["idflow_session"][0].Value != bobSession.Value || jar["idflow_session"][0].Domain != ".idflow.localhost" {
		t.Fatalf("the sibling could not even plant the bare cookie (%v): the test proves nothing", jar)
	}
	for _, c := range jar["__Host-idflow_session"] {
		if c.Value == bobSession.Value {
			t.Fatalf("the browser took a planted __Host- cookie: %+v", c)
		}
	}
	if len(jar["__Host-idflow_session"]) != 1 {
		t.Fatalf("alice's own session cookie is gone: %v", jar)
	}
	alice.run("back to idflow", chromedp.Navigate(app+"/"), chromedp.WaitVisible(chromedp.CSS(`#me dd[data-field="User"]`)))
	if got := alice.text(`#me dd[data-field="User"]`); got != "dev-alice" {
		t.Fatalf("after the sibling's attack the page shows %q, want dev-alice", got)
	}
	if status, user := whoAmI(alice); status != http.StatusOK || user != "dev-alice" {
		t.Fatalf("after the sibling's attack /api/v1/me = %d %q, want dev-alice", status, user)
	}

	// A signed-out victim stays signed out.
	visitor := &browser{ctx: contexts(), base: app, t: t}
	pendings <- nextPending()
	visitor.run("visit the sibling origin", chromedp.Navigate(evil), chromedp.WaitReady(chromedp.CSS("body")))
	if loc := value(visitor, "location", chromedp.Location()); !strings.HasPrefix(loc, app+"/auth/callback?") {
		t.Fatalf("idflow finished the sign-in the sibling planted: the browser went on to %s", loc)
	}
	if jar := cookies(visitor); len(jar["idflow_login"]) != 1 || len(jar["__Host-idflow_session"]) != 0 {
		t.Fatalf("planted cookies: %v", jar)
	}
	visitor.run("open idflow", chromedp.Navigate(app+"/"), chromedp.WaitVisible(chromedp.ID("login-alice")))
	if status, user := whoAmI(visitor); status != http.StatusUnauthorized || user != "" {
		t.Fatalf("a signed-out victim after the attack: /api/v1/me = %d %q, want 401", status, user)
	}
}
