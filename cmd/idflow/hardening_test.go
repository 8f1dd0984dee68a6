package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/idflow/idflow"
)

// slowConn writes requests byte by byte, like a slow-loris client.
type slowConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialSlow(t *testing.T, base string) *slowConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second)) // the test's own bound, far beyond idflow's
	return &slowConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *slowConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

// post sends the head of POST path announcing a body of n bytes.
func (c *slowConn) post(path, token string, n int, expectContinue bool) {
	c.t.Helper()
	h := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: idflow\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", path, n)
	if token != "" {
		h += "Authorization: Bearer " + token + "\r\n"
	}
	if expectContinue {
		h += "Expect: 100-continue\r\n"
	}
	c.send(h + "\r\n")
}

func (c *slowConn) response() (int, string, http.Header) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("reading the response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (c *slowConn) closed() bool {
	_, err := c.br.ReadByte()
	return err == io.EOF
}

// TestSlowBodiesAreBounded: against the real server, bodies that trickle
// in hold a connection only until IDFLOW_BODY_TIMEOUT fires (408, closed
// — also when the request is refused unread, 401), one address may have
// only IDFLOW_MAX_BODIES_PER_PEER of them in flight (429 at once beyond),
// and a WebSocket opened before them all lives on past every deadline.
func TestSlowBodiesAreBounded(t *testing.T) {
	t.Parallel()
	w := startRunsWorld(t, map[string]string{"IDFLOW_BODY_TIMEOUT": "1s", "IDFLOW_MAX_BODIES_PER_PEER": "3"})
	ctx := runsCtx(t, 90*time.Second)
	run := wsLongRun(t, w, w.alice)
	ws, resp, err := wsDial(ctx, w.URL, run.ID, w.alice)
	if err != nil {
		t.Fatalf("dial: %v (%s)", err, runsRespStatus(resp))
	}
	defer ws.CloseNow()

	var slow []*slowConn
	for range 3 {
		c := dialSlow(t, w.URL)
		c.post("/api/v1/facts", w.alice, 100, true)
		// 100 Continue: the handler is reading, the body is in flight.
		if status, _, _ := c.response(); status != http.StatusContinue {
			t.Fatalf("want 100 Continue, got %d", status)
		}
		c.send(`{"content": "`)
		slow = append(slow, c)
	}
	fourth := dialSlow(t, w.URL)
	fourth.post("/api/v1/facts", w.alice, 100, false)
	if status, body, h := fourth.response(); status != http.StatusTooManyRequests ||
		h.Get("Content-Type") != "application/problem+json" || !fourth.closed() {
		t.Fatalf("a fourth body from the same address: %d %s", status, body)
	}
	for i, c := range slow { // each answer comes when its deadline fires
		status, body, h := c.response()
		if status != http.StatusRequestTimeout || h.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("slow body %d: %d %s", i, status, body)
		}
		if !c.closed() {
			t.Fatalf("slow body %d: the connection is still open", i)
		}
	}
	// Unauthenticated and unread: idflow drains a refused body before it
	// reuses a connection, and that drain is bound by the deadline too.
	anon := dialSlow(t, w.URL)
	anon.post("/api/v1/facts", "", 100, false)
	anon.send("{")
	if status, body, _ := anon.response(); status != http.StatusUnauthorized || !anon.closed() {
		t.Fatalf("an unauthenticated slow body: %d %s", status, body)
	}

	// The places are free again.
	if status, body := runsCall(t, w.URL, "POST", "/api/v1/facts", w.alice, map[string]string{"content": "after the flood"}); status != http.StatusCreated {
		t.Fatalf("a fact after the flood: %d %s", status, body)
	}
	// The socket lived through every deadline: it follows the run to its end.
	if status, body := runsCall(t, w.URL, "POST", "/api/v1/runs/"+run.ID+"/cancel", w.alice, nil); status != http.StatusOK {
		t.Fatalf("cancel: %d %s", status, body)
	}
	evs, status, err := wsRead(ctx, ws)
	if err != nil || status != 1000 || len(evs) == 0 || evs[len(evs)-1].Type != idflow.EventRunCancelled {
		t.Fatalf("the socket ended with %d (%v) after %d events; want 1000 after run.cancelled", status, err, len(evs))
	}
}

// auditRows answers the whole audit trail as the admin sees it.
// Refusals before authentication have no tenant: the platform admin reads
// them.
func auditRows(t *testing.T, s *prodServer) []idflow.AuditEvent {
	t.Helper()
	var l idflow.List[idflow.AuditEvent]
	r := s.As(t, callerRoot, "GET", "/api/v1/admin/audit?limit=200", nil)
	mustStatus(t, r, http.StatusOK)
	r.JSON(t, &l)
	return l.Items
}

// TestAnonymousNoiseIsBounded: a flood of junk tokens at long made-up
// paths writes at most 10 audit rows a minute for that address and reason,
// each naming the route pattern, not the path; forged identity headers
// have their own budget; the admin's verification still passes.
func TestAnonymousNoiseIsBounded(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, nil)
	junkPath := "/api/v1/apps/" + strings.Repeat("x", 4000)
	for range 30 {
		mustStatus(t, s.Do(t, "GET", junkPath, "junk.token.value", nil), http.StatusUnauthorized)
	}
	for range 3 {
		mustStatus(t, s.Do(t, "GET", "/api/v1/me", "", nil, header{"X-Authenticated-User", "admin"}), http.StatusUnauthorized)
	}
	junk, spoof := 0, 0
	for _, e := range auditRows(t, s) {
		if e.Action != "authenticate" || e.UserID != "" {
			continue
		}
		switch {
		case strings.Contains(e.Detail, "spoofed"):
			spoof++
		case e.Resource == "GET /api/v1/apps/{app_id}":
			junk++
		default:
			t.Errorf("an unexpected anonymous row: %s %.200q", e.Resource, e.Detail)
		}
	}
	if junk != 10 || spoof != 3 {
		t.Fatalf("%d rows for 30 junk tokens (want 10), %d for 3 forged headers (want 3)", junk, spoof)
	}
	var v struct {
		OK      bool `json:"ok"`
		Checked int  `json:"checked"`
	}
	r := s.As(t, callerRoot, "GET", "/api/v1/admin/audit/verify", nil)
	mustStatus(t, r, http.StatusOK)
	if r.JSON(t, &v); !v.OK || v.Checked < 13 {
		t.Fatalf("verify: %+v", v)
	}
}

// TestSignInAndOutAudited: a browser sign-in and sign-out are audited as
// auth.login and auth.logout with the user and tenant, and the user sees
// them in their own trail; a refused sign-out (no CSRF token) and a
// callback without a sign-in in progress are audited as denials of nobody.
func TestSignInAndOutAudited(t *testing.T) {
	t.Parallel()
	srv := startIdflow(t, nil, "--dev")
	cookie := runsBrowserSession(t, srv.URL, "alice")
	withCookie := func(method, path, csrf string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.AddCookie(cookie)
		if csrf != "" {
			req.Header.Set("X-CSRF-Token", csrf)
		}
		resp, err := harnessClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := withCookie("GET", "/api/v1/me", "")
	var me struct {
		UserID string `json:"user_id"`
		CSRF   string `json:"csrf_token"`
	}
	err := json.NewDecoder(resp.Body).Decode(&me)
	resp.Body.Close()
	if err != nil || me.UserID != "dev-alice" || me.CSRF == "" {
		t.Fatalf("/api/v1/me with the cookie: %v %+v", err, me)
	}
	if resp := withCookie("POST", "/auth/logout", ""); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-out without the CSRF token: %s", resp.Status)
	}
	if resp := withCookie("POST", "/auth/logout", me.CSRF); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %s", resp.Status)
	}
	if resp, _ := srv.get(t, "/auth/callback?code=c&state=s", ""); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a callback without a sign-in: %s", resp.Status)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	find := func(login, path string) map[string]idflow.AuditEvent {
		t.Helper()
		tok, err := devToken(ctx, srv.URL, login, time.Hour, "")
		if err != nil {
			t.Fatal(err)
		}
		resp, body := srv.get(t, path, tok)
		var l idflow.List[idflow.AuditEvent]
		if err := json.Unmarshal(body, &l); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s %s", path, resp.Status, body)
		}
		out := map[string]idflow.AuditEvent{}
		for _, e := range l.Items {
			if strings.HasPrefix(e.Action, "auth.") {
				out[e.Action+" "+e.Outcome+" "+e.UserID] = e
			}
		}
		return out
	}
	all := find("platform", "/api/v1/admin/audit?limit=200") // refusals of nobody have no tenant
	for _, k := range []string{"auth.login success dev-alice", "auth.logout success dev-alice"} {
		if e, ok := all[k]; !ok || e.TenantID != "t-one" {
			t.Errorf("no %q row with tenant t-one: %+v (all: %v)", k, e, all)
		}
	}
	for _, k := range []string{"auth.logout denied ", "auth.login denied "} {
		if _, ok := all[k]; !ok {
			t.Errorf("no %q row (all: %v)", k, all)
		}
	}
	own := find("alice", "/api/v1/audit")
	if _, ok := own["auth.login success dev-alice"]; !ok {
		t.Errorf("alice does not see her own sign-in: %v", own)
	}
	if _, ok := own["auth.logout success dev-alice"]; !ok {
		t.Errorf("alice does not see her own sign-out: %v", own)
	}
}
