package main

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/idflow/idflow"
)

// connCall sends a JSON request to an idflow server as token ("" for none).
func connCall(t testing.TB, base, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// connJSON is connCall that requires status want and decodes the answer.
func connJSON[T any](t testing.TB, base, method, path, token string, body any, want int) T {
	t.Helper()
	status, out := connCall(t, base, method, path, token, body)
	if status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, out)
	}
	var v T
	if len(out) > 0 {
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, out)
		}
	}
	return v
}

var (
	connFormRe  = regexp.MustCompile(`(?is)<form[^>]*\baction="([^"]*)"[^>]*>(.*?)</form>`)
	connInputRe = regexp.MustCompile(`(?is)<input\b[^>]*>`)
	connNameRe  = regexp.MustCompile(`(?i)\bname="([^"]*)"`)
	connValueRe = regexp.MustCompile(`(?i)\bvalue="([^"]*)"`)
)

// connParseForm returns the action and hidden inputs of the first form in page.
func connParseForm(t testing.TB, page string) (string, url.Values) {
	t.Helper()
	m := connFormRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form in the page: %.300s", page)
	}
	fields := url.Values{}
	for _, in := range connInputRe.FindAllString(m[2], -1) {
		n := connNameRe.FindStringSubmatch(in)
		if n == nil {
			continue
		}
		v := ""
		if vm := connValueRe.FindStringSubmatch(in); vm != nil {
			v = html.UnescapeString(vm[1])
		}
		fields.Set(html.UnescapeString(n[1]), v)
	}
	return html.UnescapeString(m[1]), fields
}

// devBrowserPick plays a browser at the dev issuer: it opens authorizeURL,
// picks login on the page, and returns where the issuer redirects to.
func devBrowserPick(t testing.TB, authorizeURL, login string) *url.URL {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(authorizeURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("authorize page: %d %s", resp.StatusCode, page)
	}
	action, fields := connParseForm(t, string(page))
	fields.Set("login", login)
	target, err := resp.Request.URL.Parse(action)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = client.PostForm(target.String(), fields)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("pick: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc
}

// connWaitRun polls a run until it ends (a deadline, not a sleep, bounds it).
func connWaitRun(t testing.TB, base, token, runID string) idflow.Run {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	pause := 10 * time.Millisecond
	for {
		run := connJSON[idflow.Run](t, base, "GET", "/api/v1/runs/"+runID, token, nil, http.StatusOK)
		if run.Terminal() {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still %s after 60s", runID, run.Status)
		}
		time.Sleep(pause) // paces the polling; the deadline decides
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// TestDevDownstreamEndToEnd: in --dev, alice connects the dev provider
// through the HTTP API (the test plays her browser at the dev issuer), a
// workflow's downstream_get step calls the dev downstream API as her, and
// whoami says alice; bob, not connected, gets a clear failure, never
// alice's credential.
func TestDevDownstreamEndToEnd(t *testing.T) {
	t.Parallel()
	srv := startIdflow(t, map[string]string{"IDFLOW_LOG_LEVEL": "error"}, "--dev")
	ctx := context.Background()
	aliceTok, err := devToken(ctx, srv.URL, "alice", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	bobTok, err := devToken(ctx, srv.URL, "bob", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}

	list := connJSON[idflow.List[idflow.Connection]](t, srv.URL, "GET", "/api/v1/connections", aliceTok, nil, http.StatusOK)
	if len(list.Items) != 0 {
		t.Fatalf("a new user has connections: %+v", list.Items)
	}
	out := connJSON[struct {
		AuthorizeURL string `json:"authorize_url"`
	}](t, srv.URL, "POST", "/api/v1/connections/dev/connect", aliceTok, nil, http.StatusOK)
	if !strings.HasPrefix(out.AuthorizeURL, srv.URL+"/dev/idp/authorize?") {
		t.Fatalf("authorize_url %s", out.AuthorizeURL)
	}
	cb := devBrowserPick(t, out.AuthorizeURL, "alice")
	if cb.Path != "/api/v1/connections/dev/callback" || cb.Query().Get("code") == "" {
		t.Fatalf("the dev issuer redirected to %s", cb)
	}
	callback := cb.Path + "?" + cb.RawQuery

	// bob cannot complete alice's flow, and his attempt does not spend it.
	if status, body := connCall(t, srv.URL, "GET", callback, bobTok, nil); status != http.StatusNotFound {
		t.Fatalf("bob's callback with alice's state: %d %s", status, body)
	}
	audit := connJSON[idflow.List[idflow.AuditEvent]](t, srv.URL, "GET", "/api/v1/audit", bobTok, nil, http.StatusOK)
	if !containsAudit(audit.Items, "connection.connect", idflow.OutcomeDenied) {
		t.Fatalf("bob's attempt is not in his audit trail: %+v", audit.Items)
	}
	if status, _ := connCall(t, srv.URL, "GET", callback, "", nil); status != http.StatusUnauthorized {
		t.Fatalf("an unauthenticated callback: %d", status)
	}
	conn := connJSON[idflow.Connection](t, srv.URL, "GET", callback, aliceTok, nil, http.StatusOK)
	if conn.Provider != "dev" || conn.UserID != "dev-alice" || conn.Status != idflow.ConnectionActive {
		t.Fatalf("connection %+v", conn)
	}
	status, raw := connCall(t, srv.URL, "GET", "/api/v1/connections", aliceTok, nil)
	if status != http.StatusOK || !strings.Contains(string(raw), `"provider":"dev"`) ||
		strings.Contains(string(raw), "token") || strings.Contains(string(raw), "ciphertext") {
		t.Fatalf("alice's connections: %d %s", status, raw)
	}
	if list := connJSON[idflow.List[idflow.Connection]](t, srv.URL, "GET", "/api/v1/connections", bobTok, nil, http.StatusOK); len(list.Items) != 0 {
		t.Fatalf("bob sees %+v", list.Items)
	}

	// The dev downstream API refuses idflow's own tokens: only the
	// connection's token is accepted there.
	if status, _ := connCall(t, srv.URL, "GET", "/dev/downstream/whoami", aliceTok, nil); status != http.StatusUnauthorized {
		t.Fatalf("whoami with alice's idflow token: %d, want 401", status)
	}

	wf := connJSON[idflow.Workflow](t, srv.URL, "POST", "/api/v1/workflows", aliceTok, map[string]any{"name": "who am I downstream",
		"definition": map[string]any{"steps": []any{map[string]any{"id": "ask", "type": "tool", "tool": "downstream_get",
			"args": map[string]any{"provider": "dev", "path": "/whoami", "user_id": "dev-bob"}}}}}, http.StatusCreated)
	run := connJSON[idflow.Run](t, srv.URL, "POST", "/api/v1/workflows/"+wf.ID+"/runs", aliceTok, map[string]any{"input": nil}, http.StatusAccepted)
	if run = connWaitRun(t, srv.URL, aliceTok, run.ID); run.Status != idflow.RunSucceeded {
		t.Fatalf("alice's run %s: %s", run.Status, run.Error)
	}
	evs := connJSON[struct{ Items []idflow.Event }](t, srv.URL, "GET", "/api/v1/runs/"+run.ID+"/events", aliceTok, nil, http.StatusOK)
	var who struct {
		Status int `json:"status"`
		Body   struct {
			Sub, Login, ClientID string
		} `json:"body"`
	}
	for _, ev := range evs.Items {
		if ev.UserID != "dev-alice" {
			t.Fatalf("event of %q in alice's run", ev.UserID)
		}
		if ev.Type == idflow.EventStepOutput && ev.StepID == "ask" {
			if err := json.Unmarshal(ev.Data, &who); err != nil {
				t.Fatal(err)
			}
		}
	}
	if who.Status != 200 || who.Body.Login != "alice" || who.Body.Sub != "dev-alice" {
		t.Fatalf("downstream whoami said %+v; want alice (a user_id argument is never obeyed)", who)
	}

	// bob's run of his own copy fails clearly: he has no connection.
	bwf := connJSON[idflow.Workflow](t, srv.URL, "POST", "/api/v1/workflows", bobTok, map[string]any{"name": "bob",
		"definition": wf.Definition}, http.StatusCreated)
	brun := connJSON[idflow.Run](t, srv.URL, "POST", "/api/v1/workflows/"+bwf.ID+"/runs", bobTok, map[string]any{"input": nil}, http.StatusAccepted)
	if brun = connWaitRun(t, srv.URL, bobTok, brun.ID); brun.Status != idflow.RunFailed || !strings.Contains(brun.Error, "no connection") {
		t.Fatalf("bob's run %s: %q; want failed with no connection", brun.Status, brun.Error)
	}

	// Disconnect: bob cannot; alice can; then it is gone.
	if status, _ := connCall(t, srv.URL, "DELETE", "/api/v1/connections/dev", bobTok, nil); status != http.StatusNotFound {
		t.Fatalf("bob deleting: %d", status)
	}
	if status, body := connCall(t, srv.URL, "DELETE", "/api/v1/connections/dev", aliceTok, nil); status != http.StatusNoContent {
		t.Fatalf("alice deleting: %d %s", status, body)
	}
	if list := connJSON[idflow.List[idflow.Connection]](t, srv.URL, "GET", "/api/v1/connections", aliceTok, nil, http.StatusOK); len(list.Items) != 0 {
		t.Fatalf("after delete: %+v", list.Items)
	}
	if status, _ := connCall(t, srv.URL, "DELETE", "/api/v1/connections/dev", aliceTok, nil); status != http.StatusNotFound {
		t.Fatalf("deleting twice: %d", status)
	}
	if status, _ := connCall(t, srv.URL, "POST", "/api/v1/connections/nope/connect", aliceTok, nil); status != http.StatusNotFound {
		t.Fatalf("unknown provider: %d", status)
	}
}

func containsAudit(events []idflow.AuditEvent, action, outcome string) bool {
	for _, e := range events {
		if e.Action == action && e.Outcome == outcome {
			return true
		}
	}
	return false
}
