package mcpclient_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/mcpclient"
)

// These tests run against testdata/downstreammcp/server.mjs: the official
// TypeScript MCP SDK, verifying idflow's assertions with jose against
// idflow's JWKS. It shares no code with idflow.

func assertionFile(servers ...string) string {
	return `{"servers": [` + strings.Join(servers, ",") + `]}`
}

func assertionServer(name, url string, groups ...string) string {
	s := fmt.Sprintf(`{"name": %q, "url": %q, "auth": {"type": "assertion"}`, name, url)
	if groups != nil {
		s += fmt.Sprintf(`, "groups": ["%s"]`, strings.Join(groups, `", "`))
	}
	return s + "}"
}

// TestAssertionActsAsEachUser: the downstream verifies each user's
// assertion and sees that user — and only that user — on that user's own
// session.
func TestAssertionActsAsEachUser(t *testing.T) {
	t.Parallel()
	keys := newIdflowKeys(t)
	ds := tsDownstream(t, keys)
	var logs logBuffer
	s := servers(t, assertionFile(assertionServer("tickets", ds.URL)), mcpclient.Deps{Signer: keys.signer, Log: logs.logger()})

	at := toolsOf(t, s, alice)
	if got, want := names(at), "[tickets__echo tickets__fail tickets__inject tickets__sleep tickets__whoami]"; got != want {
		t.Fatalf("alice's tools: %s, want %s", got, want)
	}
	echo := at["tickets__echo"]
	if echo.Title != "Echo" || !strings.Contains(string(echo.Parameters), `"text"`) || echo.ReadOnly {
		t.Fatalf("echo's spec: %+v", echo.ToolSpec)
	}
	if !at["tickets__whoami"].ReadOnly {
		t.Fatal("whoami's readOnlyHint was lost")
	}

	who := func(p idflow.Principal) map[string]any {
		t.Helper()
		v, err := run(t.Context(), t, at["tickets__whoami"], p, `{}`)
		if err != nil {
			t.Fatalf("whoami as %s: %v", p.UserID, err)
		}
		return asMap(t, v)
	}
	a := who(alice)
	if a["sub"] != "alice" || a["email"] != alice.Email || a["tid"] != "t-one" || a["name"] != "alice" ||
		fmt.Sprint(a["groups"]) != "[engineering]" || a["session_owner"] != "alice" {
		t.Fatalf("the downstream saw alice as %v", a)
	}
	if a["iss"] != keys.issuer || a["aud"] != ds.URL {
		t.Fatalf("iss %v aud %v; want %s and %s", a["iss"], a["aud"], keys.issuer, ds.URL)
	}
	if l, _ := a["lifetime"].(float64); l <= 0 || l > 300 {
		t.Fatalf("the assertion lives %v s; at most 300", a["lifetime"])
	}
	// Run acts as the Principal it is given, not as whoever listed the tool.
	if b := who(bob); b["sub"] != "bob" || b["session_owner"] != "bob" || b["email"] != bob.Email {
		t.Fatalf("bob through alice's tool list: %v", b)
	}
	_ = who(alice)
	st := ds.Stats(t)
	if st.Sessions["alice"] != 1 || st.Sessions["bob"] != 1 || st.Foreign != 0 || st.Refused != 0 {
		t.Fatalf("downstream stats %+v: want one session each, none foreign or refused", st)
	}

	// Names the catalog cannot carry are skipped, and said so.
	for _, skipped := range []string{"dotted.name", "a_tool_name_so_long"} {
		if !strings.Contains(logs.String(), "downstream mcp tool skipped") || !strings.Contains(logs.String(), skipped) {
			t.Fatalf("no log line for the skipped tool %s:\n%s", skipped, logs.String())
		}
	}
	valid := regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	for n := range at {
		if !valid.MatchString(n) {
			t.Fatalf("exposed name %q breaks the name rules", n)
		}
	}
}

// TestConcurrentUsersNeverMixed interleaves many users' calls: every
// answer names its own caller, each user gets exactly one session, and
// the downstream never sees a request on another user's session.
func TestConcurrentUsersNeverMixed(t *testing.T) {
	t.Parallel()
	keys := newIdflowKeys(t)
	ds := tsDownstream(t, keys)
	s := servers(t, assertionFile(assertionServer("tickets", ds.URL)), mcpclient.Deps{Signer: keys.signer})
	echo := toolsOf(t, s, alice)["tickets__echo"]

	const users, calls = 8, 12
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, users*calls)
	for i := range users * calls {
		p := user(fmt.Sprintf("user%d", i%users))
		text := fmt.Sprintf("%s-call-%d", p.UserID, i)
		wg.Go(func() {
			<-start
			v, err := echo.Run(t.Context(), p, []byte(fmt.Sprintf(`{"text": %q}`, text)))
			if err != nil {
				errs <- fmt.Errorf("%s: %w", p.UserID, err)
				return
			}
			m := asMap(t, v)
			if m["sub"] != p.UserID || m["text"] != text {
				errs <- fmt.Errorf("%s's call %q was answered for %v with %v", p.UserID, text, m["sub"], m["text"])
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := ds.Stats(t)
	for i := range users {
		u := fmt.Sprintf("user%d", i)
		if st.Sessions[u] != 1 || st.Calls[u] != calls {
			t.Errorf("%s: %d sessions, %d calls at the downstream; want 1 and %d", u, st.Sessions[u], st.Calls[u], calls)
		}
	}
	if st.Foreign != 0 || st.Refused != 0 {
		t.Fatalf("downstream saw %d requests on another user's session, %d refused", st.Foreign, st.Refused)
	}
}

// TestForgedAssertionsAreRefused proves the downstream really checks:
// a token signed by another key, for another audience, from another
// issuer, expired, too long-lived, or absent is refused — and a right one
// is accepted, so the refusals are not a server that refuses everything.
func TestForgedAssertionsAreRefused(t *testing.T) {
	t.Parallel()
	keys := newIdflowKeys(t)
	ds := tsDownstream(t, keys)
	attacker := newSigner(t, keys.issuer) // same issuer name, another key
	now := time.Now()
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": keys.issuer, "aud": ds.URL, "sub": "alice", "tid": "t-one",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(4 * time.Minute).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	sign := func(s *auth.Signer, c map[string]any) string {
		tok, err := s.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"attacker","version":"1"}}}`
	post := func(token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, ds.URL, strings.NewReader(initialize))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(sign(keys.signer, claims(nil))); got != http.StatusOK {
		t.Fatalf("a right assertion: %d, want 200", got)
	}
	for _, c := range []struct{ name, token string }{
		{"absent", ""},
		{"another key", sign(attacker, claims(nil))},
		{"another audience", sign(keys.signer, claims(func(c map[string]any) { c["aud"] = "http://127.0.0.1:1/mcp" }))},
		{"another issuer", sign(keys.signer, claims(func(c map[string]any) { c["iss"] = "https://evil.example" }))},
		{"expired", sign(keys.signer, claims(func(c map[string]any) {
			c["iat"], c["nbf"], c["exp"] = now.Add(-10*time.Minute).Unix(), now.Add(-10*time.Minute).Unix(), now.Add(-5*time.Minute).Unix()
		}))},
		{"no exp", sign(keys.signer, claims(func(c map[string]any) { delete(c, "exp") }))},
		{"lives an hour", sign(keys.signer, claims(func(c map[string]any) { c["exp"] = now.Add(time.Hour).Unix() }))},
		{"not a JWT", "alice"},
	} {
		if got := post(c.token); got != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", c.name, got)
		}
	}

	// idflow with the wrong key: the server is left out, and the log says
	// the downstream refused the credential.
	var logs logBuffer
	forged := servers(t, assertionFile(assertionServer("tickets", ds.URL)), mcpclient.Deps{Signer: attacker, Log: logs.logger()})
	if ts := toolsOf(t, forged, alice); len(ts) != 0 {
		t.Fatalf("tools listed with a forged assertion: %s", names(ts))
	}
	if !strings.Contains(logs.String(), "refused the credential idflow sent for you (HTTP 401)") {
		t.Fatalf("log: %s", logs.String())
	}
}

// TestSessionReestablished: when the downstream ends the session (a
// restart), the next call sets up a new one and succeeds.
func TestSessionReestablished(t *testing.T) {
	t.Parallel()
	keys := newIdflowKeys(t)
	ds := tsDownstream(t, keys)
	s := servers(t, assertionFile(assertionServer("tickets", ds.URL)), mcpclient.Deps{Signer: keys.signer})
	who := toolsOf(t, s, alice)["tickets__whoami"]
	if _, err := run(t.Context(), t, who, alice, `{}`); err != nil {
		t.Fatal(err)
	}
	if n := ds.DropSessions(t); n != 1 {
		t.Fatalf("dropped %d sessions, want alice's one", n)
	}
	v, err := run(t.Context(), t, who, alice, `{}`)
	if err != nil {
		t.Fatalf("after the downstream ended the session: %v", err)
	}
	if m := asMap(t, v); m["sub"] != "alice" {
		t.Fatalf("whoami: %v", m)
	}
	if st := ds.Stats(t); st.Sessions["alice"] != 2 || st.Open != 1 {
		t.Fatalf("downstream stats %+v: want a second session for alice", st)
	}
}

// TestResultsAndToolErrors: structured content, text, an error result and
// a prompt-injection text, as the catalog receives them.
func TestResultsAndToolErrors(t *testing.T) {
	t.Parallel()
	keys := newIdflowKeys(t)
	ds := tsDownstream(t, keys)
	s := servers(t, assertionFile(assertionServer("tickets", ds.URL)), mcpclient.Deps{Signer: keys.signer,
		Limits: mcpclient.Limits{CallTimeout: time.Second}})
	at := toolsOf(t, s, alice)
	ctx := t.Context()

	v, err := run(ctx, t, at["tickets__echo"], alice, `{"text": "hello"}`)
	if m := asMap(t, v); err != nil || m["text"] != "hello" || m["sub"] != "alice" {
		t.Fatalf("echo: %v %v", v, err)
	}
	// A prompt injection is data: a string result, and nothing runs as bob.
	v, err = run(ctx, t, at["tickets__inject"], alice, `{}`)
	if text, ok := v.(string); err != nil || !ok || !strings.Contains(text, "IGNORE PREVIOUS INSTRUCTIONS") {
		t.Fatalf("inject: %#v %v", v, err)
	}
	_, err = run(ctx, t, at["tickets__fail"], alice, `{}`)
	if !errContains(err, idflow.EINVALID, "tickets__fail failed: the ticket store refused: quota exceeded") {
		t.Fatalf("an error result: %v", err)
	}
	if _, err := run(ctx, t, at["tickets__echo"], alice, `["not", "an", "object"]`); idflow.ErrorCode(err) != idflow.EINVALID {
		t.Fatalf("array arguments: %v", err)
	}
	_, err = run(ctx, t, at["tickets__echo"], alice, `{"text": 42}`)
	if err == nil {
		t.Fatal("the downstream accepted a number as text")
	}
	// A call that outlives CallTimeout answers a clear error in time.
	began := time.Now()
	_, err = run(ctx, t, at["tickets__sleep"], alice, `{"ms": 20000}`)
	if !errContains(err, idflow.EUNAVAILABLE, "tickets did not answer in time") || time.Since(began) > 10*time.Second {
		t.Fatalf("a slow call: %v after %s", err, time.Since(began))
	}
	if v, err := run(ctx, t, at["tickets__whoami"], alice, `{}`); err != nil || asMap(t, v)["sub"] != "alice" {
		t.Fatalf("after a timeout: %v %v", v, err)
	}
	if st := ds.Stats(t); st.Calls["bob"] != 0 || st.Sessions["bob"] != 0 {
		t.Fatalf("something ran as bob: %+v", st)
	}
}

// TestGroupsGating: a server limited to a group is offered only to its
// members, and its tools refuse anyone else before any request leaves.
func TestGroupsGating(t *testing.T) {
	t.Parallel()
	keys := newIdflowKeys(t)
	ds := tsDownstream(t, keys)
	s := servers(t, assertionFile(assertionServer("eng", ds.URL, "engineering", "platform")), mcpclient.Deps{Signer: keys.signer})
	at := toolsOf(t, s, alice)
	if _, ok := at["eng__whoami"]; !ok {
		t.Fatalf("alice (engineering) got %s", names(at))
	}
	if bt := toolsOf(t, s, bob); len(bt) != 0 {
		t.Fatalf("bob (no group) got %s", names(bt))
	}
	// Found by name (tools.Finder) as listed: alice's, never bob's.
	for _, c := range []struct {
		p     idflow.Principal
		name  string
		found bool
	}{{alice, "eng__whoami", true}, {bob, "eng__whoami", false}, {alice, "eng__nothing", false}, {alice, "other__whoami", false}, {alice, "whoami", false}} {
		tl, found, err := s.Tool(t.Context(), c.p, c.name)
		if err != nil || found != c.found || found && tl.Name != c.name {
			t.Fatalf("Tool(%s, %s) = %q, %v, %v; want found %v", c.p.UserID, c.name, tl.Name, found, err, c.found)
		}
	}
	_, err := run(t.Context(), t, at["eng__whoami"], bob, `{}`)
	if !errContains(err, idflow.EFORBIDDEN, "you may not use the tools of eng") {
		t.Fatalf("bob calling alice's tool: %v", err)
	}
	if st := ds.Stats(t); st.Sessions["bob"] != 0 || st.Calls["bob"] != 0 || st.Refused != 0 {
		t.Fatalf("bob reached the downstream: %+v", st)
	}
}

// TestDownServersDoNotStallOthers: a server that does not answer and one
// that is not there are left out within the list timeout — in parallel,
// not one after the other — and the others are listed.
func TestDownServersDoNotStallOthers(t *testing.T) {
	t.Parallel()
	keys := newIdflowKeys(t)
	ds := tsDownstream(t, keys)
	hang := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-hang:
		}
	}))
	t.Cleanup(func() { close(hang); hung.Close() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String() + "/mcp"
	l.Close()

	const listTimeout = 3 * time.Second
	var logs logBuffer
	s := servers(t, assertionFile(assertionServer("hang1", hung.URL+"/mcp"), assertionServer("tickets", ds.URL),
		assertionServer("hang2", hung.URL+"/other"), assertionServer("dead", dead)),
		mcpclient.Deps{Signer: keys.signer, Log: logs.logger(), Limits: mcpclient.Limits{ListTimeout: listTimeout}})
	// Warm up the downstream (JWKS fetch, JIT) outside the measurement.
	_ = toolsOf(t, s, user("warmup"))
	began := time.Now()
	at := toolsOf(t, s, alice)
	took := time.Since(began)
	if _, ok := at["tickets__whoami"]; !ok || len(at) != 5 {
		t.Fatalf("tools: %s", names(at))
	}
	// Listed one after the other, the two hanging servers would take 2×.
	if took >= 2*listTimeout-250*time.Millisecond {
		t.Fatalf("listing took %s with two hanging servers; each is bounded by %s, in parallel\n%s", took, listTimeout, logs.String())
	}
	for _, srv := range []string{"hang1", "hang2", "dead"} {
		if !regexp.MustCompile(`left out of the tool list" server=` + srv + ` `).MatchString(logs.String()) {
			t.Errorf("no log line for %s:\n%s", srv, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "hang1 did not answer in time") || !strings.Contains(logs.String(), "dead is unavailable") {
		t.Fatalf("log lines do not say why:\n%s", logs.String())
	}
	// A hanging server is asked again (no failure is cached), still bounded.
	began = time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 3*listTimeout)
	defer cancel()
	ts, err := s.Tools(ctx, bob)
	if err != nil || len(ts) != 5 || time.Since(began) >= 2*listTimeout-250*time.Millisecond {
		t.Fatalf("bob's list: %d tools, %v, after %s", len(ts), err, time.Since(began))
	}
	if bytes.Contains([]byte(logs.String()), []byte("eyJ")) {
		t.Fatal("a token reached the log")
	}
}
