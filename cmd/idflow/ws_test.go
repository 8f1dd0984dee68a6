package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/idflow/idflow"
)

// wsURL turns the server's base URL into the run socket's URL.
func wsURL(base, runID string) string {
	return "ws" + strings.TrimPrefix(base, "http") + "/ws/execution/" + runID
}

// wsDial opens alice's (or anyone's) run socket the way a browser does:
// subprotocols idflow.v1 and bearer.<token>.
func wsDial(ctx context.Context, base, runID, token string) (*websocket.Conn, *http.Response, error) {
	return websocket.Dial(ctx, wsURL(base, runID), &websocket.DialOptions{Subprotocols: []string{"idflow.v1", "bearer." + token}})
}

func runsRespStatus(resp *http.Response) string {
	if resp == nil {
		return "no HTTP response"
	}
	return resp.Status
}

// wsRead reads events until the socket closes, and answers them with the
// close status (-1 when the socket did not close with a close frame).
func wsRead(ctx context.Context, c *websocket.Conn) ([]idflow.Event, websocket.StatusCode, error) {
	c.SetReadLimit(64 << 20)
	var evs []idflow.Event
	for {
		typ, b, err := c.Read(ctx)
		if err != nil {
			status := websocket.CloseStatus(err)
			if status == -1 {
				return evs, status, fmt.Errorf("read after %d events: %w", len(evs), err)
			}
			return evs, status, nil
		}
		if typ != websocket.MessageText {
			return evs, -1, fmt.Errorf("a %v message", typ)
		}
		var e idflow.Event
		if err := json.Unmarshal(b, &e); err != nil {
			return evs, -1, fmt.Errorf("event %s: %w", b, err)
		}
		evs = append(evs, e)
	}
}

// wsWatch dials runID as token and reads it to the end.
func wsWatch(ctx context.Context, base, runID, token string) ([]idflow.Event, websocket.StatusCode, error) {
	c, resp, err := wsDial(ctx, base, runID, token)
	if err != nil {
		return nil, -1, fmt.Errorf("dial %s: %w (%s)", runID, err, runsRespStatus(resp))
	}
	defer c.CloseNow()
	return wsRead(ctx, c)
}

// wsCheckStream fails unless evs is a whole history of one run of login —
// seq 1..n without gap or duplicate — ending with lastType, closed with 1000.
func wsCheckStream(t *testing.T, login, runID string, evs []idflow.Event, status websocket.StatusCode, err error, lastType string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s's socket on %s: %v", login, runID, err)
	}
	runsCheckSeq(t, evs)
	for _, e := range evs {
		if e.UserID != login || e.RunID != runID {
			t.Fatalf("%s's socket on %s received an event of user %q, run %q", login, runID, e.UserID, e.RunID)
		}
	}
	if len(evs) == 0 || evs[len(evs)-1].Type != lastType || status != websocket.StatusNormalClosure {
		t.Fatalf("%s's socket on %s closed %d after:%s\nwant 1000 right after %s", login, runID, status, runsDescribe(evs), lastType)
	}
}

// wsLongRun starts a run of token's user that waits for a minute, and
// cancels it when the test ends.
func wsLongRun(t *testing.T, w *runsWorld, token string) idflow.Run {
	t.Helper()
	wf := runsWorkflow(t, w.URL, token, "long", idflow.Step{ID: "long", Type: idflow.StepWait, Ms: 60000})
	run := runsStart(t, w.URL, token, wf.ID, 0, nil)
	t.Cleanup(func() { runsCallErr(w.URL, "POST", "/api/v1/runs/"+run.ID+"/cancel", token, nil) })
	return run
}

func TestRunSocketStreamsHistoryThenLive(t *testing.T) {
	t.Parallel()
	w := startRunsWorld(t, nil)
	// Each subtest's deadline starts when it runs: parallel subtests may
	// wait long for a slot while the package's other tests run.

	t.Run("subprotocol bearer, history then live, 1000 after run.completed", func(t *testing.T) {
		t.Parallel()
		ctx := runsCtx(t, 60*time.Second)
		steps := []idflow.Step{{ID: "first", Type: idflow.StepWait, Ms: 300}}
		for i := 0; i < 5; i++ {
			steps = append(steps, idflow.Step{ID: fmt.Sprintf("who%d", i), Type: idflow.StepTool, Tool: "whoami"},
				idflow.Step{ID: fmt.Sprintf("pause%d", i), Type: idflow.StepWait, Ms: 50})
		}
		wf := runsWorkflow(t, w.URL, w.alice, "streamed", steps...)
		run := runsStart(t, w.URL, w.alice, wf.ID, 0, nil)
		// Some history exists before the socket opens.
		history := runsWaitEvent(t, w.URL, w.alice, run.ID, 30*time.Second, "first step started", func(e idflow.Event) bool {
			return e.Type == idflow.EventStepStarted
		})
		c, resp, err := wsDial(ctx, w.URL, run.ID, w.alice)
		if err != nil {
			t.Fatalf("dial: %v (%s)", err, runsRespStatus(resp))
		}
		defer c.CloseNow()
		if c.Subprotocol() != "idflow.v1" || resp.Header.Get("Sec-WebSocket-Protocol") != "idflow.v1" {
			t.Fatalf("negotiated %q (header %q); want idflow.v1", c.Subprotocol(), resp.Header.Get("Sec-WebSocket-Protocol"))
		}
		for name, vals := range resp.Header {
			for _, v := range vals {
				if strings.Contains(v, w.alice) || strings.Contains(v, "bearer.") || strings.Contains(v, w.alice[:20]) {
					t.Fatalf("the handshake answer echoes the token in %s: %q", name, v)
				}
			}
		}
		evs, status, err := wsRead(ctx, c)
		wsCheckStream(t, "alice", run.ID, evs, status, err, idflow.EventRunCompleted)
		if len(evs) <= len(history) {
			t.Fatalf("only %d events on the socket, %d were history already; want live ones after", len(evs), len(history))
		}
		for i, e := range history { // the replay is the stored history
			if evs[i].Seq != e.Seq || evs[i].Type != e.Type || evs[i].StepID != e.StepID {
				t.Fatalf("replayed event %d is %+v; stored %+v", i, evs[i], e)
			}
		}
		stored := runsEvents(t, w.URL, w.alice, run.ID)
		if len(stored) != len(evs) {
			t.Fatalf("socket delivered %d events, the run stored %d", len(evs), len(stored))
		}
	})

	t.Run("Authorization header, 1000 after run.failed", func(t *testing.T) {
		t.Parallel()
		ctx := runsCtx(t, 60*time.Second)
		wf := runsWorkflow(t, w.URL, w.alice, "fails", idflow.Step{ID: "pause", Type: idflow.StepWait, Ms: 200},
			idflow.Step{ID: "bad", Type: idflow.StepTool, Tool: "no_such_tool"})
		run := runsStart(t, w.URL, w.alice, wf.ID, 0, nil)
		c, resp, err := websocket.Dial(ctx, wsURL(w.URL, run.ID), &websocket.DialOptions{
			HTTPHeader: http.Header{"Authorization": {"Bearer " + w.alice}},
		})
		if err != nil {
			t.Fatalf("dial with the Authorization header: %v (%s)", err, runsRespStatus(resp))
		}
		defer c.CloseNow()
		evs, status, err := wsRead(ctx, c)
		wsCheckStream(t, "alice", run.ID, evs, status, err, idflow.EventRunFailed)
	})

	t.Run("1000 after run.cancelled", func(t *testing.T) {
		t.Parallel()
		ctx := runsCtx(t, 60*time.Second)
		run := wsLongRun(t, w, w.bob)
		c, resp, err := wsDial(ctx, w.URL, run.ID, w.bob)
		if err != nil {
			t.Fatalf("dial: %v (%s)", err, runsRespStatus(resp))
		}
		defer c.CloseNow()
		type result struct {
			evs    []idflow.Event
			status websocket.StatusCode
			err    error
		}
		done := make(chan result, 1)
		go func() { evs, status, err := wsRead(ctx, c); done <- result{evs, status, err} }()
		runsWaitEvent(t, w.URL, w.bob, run.ID, 30*time.Second, "wait started", func(e idflow.Event) bool { return e.Type == idflow.EventStepStarted })
		runsJSON[idflow.Run](t, w.URL, "POST", "/api/v1/runs/"+run.ID+"/cancel", w.bob, nil, http.StatusOK)
		r := <-done
		wsCheckStream(t, "bob", run.ID, r.evs, r.status, r.err, idflow.EventRunCancelled)
	})

	t.Run("after the end: the whole history, then 1000", func(t *testing.T) {
		t.Parallel()
		ctx := runsCtx(t, 60*time.Second)
		wf := runsWorkflow(t, w.URL, w.carol, "short", idflow.Step{ID: "who", Type: idflow.StepTool, Tool: "whoami"})
		run := runsStart(t, w.URL, w.carol, wf.ID, 0, nil)
		runsWaitEnd(t, w.URL, w.carol, run.ID, 30*time.Second)
		evs, status, err := wsWatch(ctx, w.URL, run.ID, w.carol)
		wsCheckStream(t, "carol", run.ID, evs, status, err, idflow.EventRunCompleted)
	})
}

func TestRunSocketQueryToken(t *testing.T) {
	t.Parallel()
	for _, allowed := range []bool{false, true} {
		t.Run(fmt.Sprintf("IDFLOW_WS_QUERY_TOKEN=%v", allowed), func(t *testing.T) {
			t.Parallel()
			w := startRunsWorld(t, map[string]string{"IDFLOW_WS_QUERY_TOKEN": fmt.Sprint(allowed)})
			ctx := runsCtx(t, 60*time.Second)
			wf := runsWorkflow(t, w.URL, w.alice, "short", idflow.Step{ID: "who", Type: idflow.StepTool, Tool: "whoami"})
			run := runsStart(t, w.URL, w.alice, wf.ID, 0, nil)
			c, resp, err := websocket.Dial(ctx, wsURL(w.URL, run.ID)+"?access_token="+w.alice, nil)
			if !allowed {
				if err == nil {
					c.CloseNow()
					t.Fatal("?access_token= accepted while IDFLOW_WS_QUERY_TOKEN=false")
				}
				if resp == nil || resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("?access_token= while disabled: %v (%s); want 401", err, runsRespStatus(resp))
				}
				return
			}
			if err != nil {
				t.Fatalf("?access_token= while enabled: %v (%s)", err, runsRespStatus(resp))
			}
			defer c.CloseNow()
			evs, status, err := wsRead(ctx, c)
			wsCheckStream(t, "alice", run.ID, evs, status, err, idflow.EventRunCompleted)
			// Even when allowed, a query token of bob's does not open alice's run.
			if _, resp, err := websocket.Dial(ctx, wsURL(w.URL, run.ID)+"?access_token="+w.bob, nil); err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
				t.Fatalf("bob's query token on alice's run: %v (%s); want 404", err, runsRespStatus(resp))
			}
		})
	}
}

func TestRunSocketRefusesAttacks(t *testing.T) {
	t.Parallel()
	w := startRunsWorld(t, nil)
	ctx := runsCtx(t, 60*time.Second)
	run := wsLongRun(t, w, w.alice)

	refused := func(t *testing.T, want int, opts *websocket.DialOptions, rawURL string) {
		t.Helper()
		if rawURL == "" {
			rawURL = wsURL(w.URL, run.ID)
		}
		c, resp, err := websocket.Dial(ctx, rawURL, opts)
		if err == nil {
			c.CloseNow()
			t.Fatalf("the socket opened; want HTTP %d before any upgrade", want)
		}
		if resp == nil || resp.StatusCode != want {
			t.Fatalf("dial: %v (%s); want HTTP %d", err, runsRespStatus(resp), want)
		}
		if want == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatal("401 without WWW-Authenticate")
		}
	}
	now := time.Now()
	expired := w.iss.Token(w.iss.OIDC("alice").With("tid", "t-one").
		With("iat", now.Add(-20*time.Minute).Unix()).With("exp", now.Add(-10*time.Minute).Unix()))
	app := w.iss.Token(w.iss.RFC9068("svc-client", "svc-client", ""))
	protocols := func(tok string) *websocket.DialOptions {
		return &websocket.DialOptions{Subprotocols: []string{"idflow.v1", "bearer." + tok}}
	}

	t.Run("another user's run: 404", func(t *testing.T) { refused(t, http.StatusNotFound, protocols(w.bob), "") })
	t.Run("another tenant's user: 404", func(t *testing.T) { refused(t, http.StatusNotFound, protocols(w.carol), "") })
	t.Run("a run that does not exist: 404", func(t *testing.T) {
		refused(t, http.StatusNotFound, protocols(w.alice), wsURL(w.URL, "run_doesnotexist00000000"))
	})
	t.Run("no token: 401", func(t *testing.T) { refused(t, http.StatusUnauthorized, nil, "") })
	t.Run("idflow.v1 alone: 401", func(t *testing.T) {
		refused(t, http.StatusUnauthorized, &websocket.DialOptions{Subprotocols: []string{"idflow.v1"}}, "")
	})
	t.Run("expired token: 401", func(t *testing.T) { refused(t, http.StatusUnauthorized, protocols(expired), "") })
	t.Run("expired token in the header: 401", func(t *testing.T) {
		refused(t, http.StatusUnauthorized, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + expired}}}, "")
	})
	t.Run("forged signature: 401", func(t *testing.T) {
		parts := strings.Split(w.alice, ".")
		forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
		refused(t, http.StatusUnauthorized, protocols(forged), "")
	})
	t.Run("app-only token: 403", func(t *testing.T) {
		if m := w.srv.me(t, app); m.Kind != "app" {
			t.Fatalf("the app token is %+v; want kind app", m)
		}
		refused(t, http.StatusForbidden, protocols(app), "")
	})
	t.Run("bearer subprotocol without idflow.v1: 401", func(t *testing.T) {
		refused(t, http.StatusUnauthorized, &websocket.DialOptions{Subprotocols: []string{"bearer." + w.alice}}, "")
	})
	t.Run("spoofed X-Authenticated-User: 401", func(t *testing.T) {
		// Even next to alice's valid token: identity headers only count from
		// a trusted proxy, and this server trusts none.
		spoof := http.Header{"X-Authenticated-User": {"alice"}}
		refused(t, http.StatusUnauthorized, &websocket.DialOptions{HTTPHeader: spoof}, "")
		refused(t, http.StatusUnauthorized, &websocket.DialOptions{HTTPHeader: spoof, Subprotocols: []string{"idflow.v1", "bearer." + w.alice}}, "")
		refused(t, http.StatusUnauthorized, &websocket.DialOptions{HTTPHeader: http.Header{
			"X-Authenticated-User": {"alice"}, "Authorization": {"Bearer " + w.alice}}}, "")
	})
	t.Run("token expiring mid-stream: 4401", func(t *testing.T) {
		lifetime := 3 * time.Second
		issued := time.Now()
		short := w.iss.Token(w.iss.OIDC("alice").With("tid", "t-one").With("iat", issued.Unix()).With("exp", issued.Add(lifetime).Unix()))
		rctx, cancel := context.WithTimeout(ctx, lifetime+15*time.Second)
		defer cancel()
		c, resp, err := wsDial(rctx, w.URL, run.ID, short)
		if err != nil {
			t.Fatalf("dial with a token valid for %s: %v (%s)", lifetime, err, runsRespStatus(resp))
		}
		defer c.CloseNow()
		evs, status, err := wsRead(rctx, c)
		if err != nil || status != 4401 {
			t.Fatalf("socket ended with status %d (%v) after %d events; want 4401 when the token expires", status, err, len(evs))
		}
		if elapsed := time.Since(issued); elapsed < lifetime-time.Second {
			t.Fatalf("closed 4401 after %s, before the token's exp", elapsed)
		}
		if len(evs) == 0 || evs[0].UserID != "alice" {
			t.Fatalf("before expiry the socket delivered %d events", len(evs))
		}
	})
}

// runsBrowserSession signs login in through the browser login (BFF) of a
// dev server, the way a browser does — /auth/login, the dev issuer's
// authorize form, /auth/callback — and answers the session cookie.
func runsBrowserSession(t *testing.T, base, login string) *http.Cookie {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(base + "/auth/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	authz, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || authz.Query().Get("state") == "" {
		t.Fatalf("/auth/login: %s, Location %q; want a redirect to the issuer", resp.Status, resp.Header.Get("Location"))
	}
	form := authz.Query()
	form.Set("login", login)
	resp, err = c.PostForm(authz.Scheme+"://"+authz.Host+authz.Path, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.Contains(callback, "/auth/callback") {
		t.Fatalf("dev issuer authorize: %s, Location %q; want a redirect to /auth/callback", resp.Status, callback)
	}
	resp, err = c.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	u, _ := url.Parse(base)
	for _, ck := range jar.Cookies(u) {
		if ck.Name == "idflow_session" {
			return ck
		}
	}
	t.Fatalf("/auth/callback: %s and no idflow_session cookie", resp.Status)
	return nil
}

// TestRunSocketSessionCookieNeedsOurOrigin: a session cookie rides along
// with any page's WebSocket, so with the cookie the handshake must come
// from this server's own Origin; a cross-site (or missing) Origin is 403.
func TestRunSocketSessionCookieNeedsOurOrigin(t *testing.T) {
	t.Parallel()
	srv := startIdflow(t, nil, "--dev")
	ctx := runsCtx(t, 60*time.Second)
	cookie := runsBrowserSession(t, srv.URL, "alice")
	bobCookie := runsBrowserSession(t, srv.URL, "bob")
	token, err := devToken(ctx, srv.URL, "alice", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	w := &runsWorld{srv: srv, URL: srv.URL, alice: token}
	run := wsLongRun(t, w, token)

	withCookie := func(ck *http.Cookie, origin string) *websocket.DialOptions {
		h := http.Header{"Cookie": {ck.Name + "=" + ck.Value}}
		if origin != "" {
			h.Set("Origin", origin)
		}
		return &websocket.DialOptions{HTTPHeader: h}
	}
	for name, tc := range map[string]struct {
		opts *websocket.DialOptions
		want int
	}{
		"cross-site Origin": {withCookie(cookie, "https://evil.example"), http.StatusForbidden},
		"no Origin":         {withCookie(cookie, ""), http.StatusForbidden},
		"null Origin":       {withCookie(cookie, "null"), http.StatusForbidden},
		"bob's cookie":      {withCookie(bobCookie, srv.URL), http.StatusNotFound},
	} {
		c, resp, err := websocket.Dial(ctx, wsURL(srv.URL, run.ID), tc.opts)
		if err == nil {
			c.CloseNow()
			t.Fatalf("%s: the socket opened; want HTTP %d", name, tc.want)
		}
		if resp == nil || resp.StatusCode != tc.want {
			t.Fatalf("%s: %v (%s); want HTTP %d", name, err, runsRespStatus(resp), tc.want)
		}
	}
	// The same cookie from this server's own page works: the Origin is what
	// was refused above.
	c, resp, err := websocket.Dial(ctx, wsURL(srv.URL, run.ID), withCookie(cookie, srv.URL))
	if err != nil {
		t.Fatalf("same-origin dial with alice's cookie: %v (%s)", err, runsRespStatus(resp))
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var e idflow.Event
	if err := json.Unmarshal(b, &e); err != nil || e.UserID != "dev-alice" || e.RunID != run.ID || e.Seq != 1 {
		t.Fatalf("first event on alice's cookie socket: %s (%v)", b, err)
	}
}

func TestRunSocketPerUserLimit(t *testing.T) {
	t.Parallel()
	w := startRunsWorld(t, map[string]string{"IDFLOW_WS_MAX_PER_USER": "3"})
	ctx := runsCtx(t, 60*time.Second)
	aliceRun, bobRun := wsLongRun(t, w, w.alice), wsLongRun(t, w, w.bob)

	var open []*websocket.Conn
	for i := 0; i < 3; i++ {
		c, resp, err := wsDial(ctx, w.URL, aliceRun.ID, w.alice)
		if err != nil {
			t.Fatalf("alice's socket %d: %v (%s)", i+1, err, runsRespStatus(resp))
		}
		defer c.CloseNow()
		open = append(open, c)
	}
	if c, resp, err := wsDial(ctx, w.URL, aliceRun.ID, w.alice); err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		if err == nil {
			c.CloseNow()
		}
		t.Fatalf("alice's 4th socket: %v (%s); want 429", err, runsRespStatus(resp))
	}
	bobConn, resp, err := wsDial(ctx, w.URL, bobRun.ID, w.bob)
	if err != nil {
		t.Fatalf("bob's socket while alice is at her limit: %v (%s)", err, runsRespStatus(resp))
	}
	bobConn.CloseNow()
	// Closing one of alice's sockets gives its slot back.
	if err := open[0].Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("close: %v", err)
	}
	runsPoll(t, 10*time.Second, "alice's slot is released", func() (bool, string) {
		c, resp, err := wsDial(ctx, w.URL, aliceRun.ID, w.alice)
		if err != nil {
			if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("redial: %v (%s)", err, runsRespStatus(resp))
			}
			return false, runsRespStatus(resp)
		}
		c.CloseNow()
		return true, ""
	})
}

func TestRunSocketsOfTwoUsersStayApart(t *testing.T) {
	t.Parallel()
	w := startRunsWorld(t, nil)
	ctx := runsCtx(t, 90*time.Second)
	type stream struct {
		login, runID string
		evs          []idflow.Event
		status       websocket.StatusCode
		err          error
	}
	var streams runsCollector[stream]
	var wg sync.WaitGroup
	for _, u := range []struct{ login, token string }{{"alice", w.alice}, {"bob", w.bob}} {
		var steps []idflow.Step
		for i := 0; i < 10; i++ {
			steps = append(steps, idflow.Step{ID: fmt.Sprintf("who%d", i), Type: idflow.StepTool, Tool: "whoami"},
				idflow.Step{ID: fmt.Sprintf("pause%d", i), Type: idflow.StepWait, Ms: 20})
		}
		wf := runsWorkflow(t, w.URL, u.token, "apart", steps...)
		for i := 0; i < 3; i++ {
			run := runsStart(t, w.URL, u.token, wf.ID, 0, nil)
			wg.Add(1)
			go func() {
				defer wg.Done()
				evs, status, err := wsWatch(ctx, w.URL, run.ID, u.token)
				streams.add(stream{u.login, run.ID, evs, status, err})
			}()
		}
	}
	wg.Wait()
	all := streams.all()
	if len(all) != 6 {
		t.Fatalf("%d streams; want 6", len(all))
	}
	for _, s := range all {
		wsCheckStream(t, s.login, s.runID, s.evs, s.status, s.err, idflow.EventRunCompleted)
		if who := runsStepOutput[map[string]any](t, s.evs, "who9"); who["user_id"] != s.login {
			t.Fatalf("whoami on %s's socket answered %v", s.login, who)
		}
	}
}

// TestRunSocketSlowConsumerIsDropped: a subscriber that stops reading is
// closed with 1013 (try again later) instead of slowing the run or other
// subscribers, and what it did receive is an unbroken prefix of the run.
//
// A socket only falls behind when the server's writes to it block, so the
// events must outgrow every buffer between the two. The slow client's
// receive buffer is shrunk to a few KiB; the server's send buffer can grow
// to net.ipv4.tcp_wmem's maximum (4 MiB by default). The first 20 steps
// each emit a 400 KiB output (memory_search finding 50 facts of 8 KiB), 8
// MB in all, so the server's write to the slow socket blocks within them;
// the remaining steps are small and quick, and their events (more than the
// bus buffer holds) pile up in the slow subscriber's buffer until it
// overflows and the bus drops it.
func TestRunSocketSlowConsumerIsDropped(t *testing.T) {
	t.Parallel()
	w := startRunsWorld(t, nil)
	ctx := runsCtx(t, 90*time.Second)
	chunk := strings.Repeat("needle hay ", (8<<10)/11+1)
	for i := 0; i < 50; i++ {
		runsJSON[idflow.Fact](t, w.URL, "POST", "/api/v1/facts", w.alice, map[string]string{"content": fmt.Sprintf("%04d %s", i, chunk)[:8<<10]}, http.StatusCreated)
	}
	const bigSteps = 20
	steps := []idflow.Step{{ID: "start", Type: idflow.StepWait, Ms: 300}}
	for i := 0; i < bigSteps; i++ {
		steps = append(steps, idflow.Step{ID: fmt.Sprintf("big%02d", i), Type: idflow.StepMemorySearch, Query: "needle", Limit: 50})
	}
	for i := len(steps); i < 100; i++ {
		steps = append(steps, idflow.Step{ID: fmt.Sprintf("small%02d", i), Type: idflow.StepTool, Tool: "whoami"})
	}
	wf := runsWorkflow(t, w.URL, w.alice, "firehose", steps...)
	run := runsStart(t, w.URL, w.alice, wf.ID, 0, nil)

	// The slow client: a tiny receive buffer, and nobody reading yet.
	dialer := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) }); err != nil {
			return err
		}
		return serr
	}}
	slow, resp, err := websocket.Dial(ctx, wsURL(w.URL, run.ID), &websocket.DialOptions{
		Subprotocols: []string{"idflow.v1", "bearer." + w.alice},
		HTTPClient:   &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}},
	})
	if err != nil {
		t.Fatalf("slow dial: %v (%s)", err, runsRespStatus(resp))
	}
	defer slow.CloseNow()

	fastEvs, fastStatus, fastErr := wsWatch(ctx, w.URL, run.ID, w.alice)
	wsCheckStream(t, "alice", run.ID, fastEvs, fastStatus, fastErr, idflow.EventRunCompleted)

	// Only now does the slow client read: what the server had buffered for
	// it, then the close.
	slowEvs, slowStatus, slowErr := wsRead(ctx, slow)
	if slowErr != nil && !errors.Is(slowErr, context.Canceled) {
		t.Fatalf("slow socket: %v", slowErr)
	}
	if slowStatus != websocket.StatusTryAgainLater {
		t.Fatalf("slow socket closed with %d after %d of %d events; want 1013", slowStatus, len(slowEvs), len(fastEvs))
	}
	t.Logf("the slow socket received %d of %d events before 1013", len(slowEvs), len(fastEvs))
	runsCheckSeq(t, slowEvs) // a prefix: nothing skipped before the drop
	if len(slowEvs) >= len(fastEvs) {
		t.Fatalf("the dropped socket received all %d events", len(slowEvs))
	}
	if end := runsJSON[idflow.Run](t, w.URL, "GET", "/api/v1/runs/"+run.ID, w.alice, nil, http.StatusOK); end.Status != idflow.RunSucceeded {
		t.Fatalf("the run is %s; a slow subscriber must not affect it", end.Status)
	}
}

// TestRunSocketKeepsBytesSentWithTheHandshake: a client may send frames in
// the same packet as its handshake; the server must not lose them when it
// takes the connection over from net/http. A raw client sends the upgrade
// request and a ping in one write, and must get the pong.
func TestRunSocketKeepsBytesSentWithTheHandshake(t *testing.T) {
	t.Parallel()
	w := startRunsWorld(t, nil)
	run := wsLongRun(t, w, w.alice)
	conn, err := net.Dial("tcp", strings.TrimPrefix(w.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	payload := []byte("sent-with-the-handshake")
	mask := [4]byte{1, 2, 3, 4}
	frame := append([]byte{0x89, 0x80 | byte(len(payload))}, mask[:]...) // FIN + ping, masked
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	req := "GET /ws/execution/" + run.ID + " HTTP/1.1\r\nHost: " + strings.TrimPrefix(w.URL, "http://") + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Protocol: idflow.v1, bearer." + w.alice + "\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), frame...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	for frames := 0; frames < 100; frames++ {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			t.Fatalf("after %d frames: %v; want the pong", frames, err)
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var ext [2]byte
			if _, err := io.ReadFull(br, ext[:]); err != nil {
				t.Fatal(err)
			}
			n = int(binary.BigEndian.Uint16(ext[:]))
		case 127:
			var ext [8]byte
			if _, err := io.ReadFull(br, ext[:]); err != nil {
				t.Fatal(err)
			}
			n = int(binary.BigEndian.Uint64(ext[:]))
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			t.Fatal(err)
		}
		switch h[0] & 0x0f {
		case 0xA: // pong
			if string(body) != string(payload) {
				t.Fatalf("pong %q; want %q", body, payload)
			}
			return
		case 0x8:
			t.Fatalf("the server closed the socket (%x) instead of answering the ping", body)
		}
	}
	t.Fatal("no pong within 100 frames")
}
