package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/testsvc"
)

// Connect flows inside the MCP client (docs/CONNECTIONS.md), over HTTP against
// idflow --dev: its dev downstream provider "dev", idflow as the MCP
// authorization server, the go-sdk client, and the test playing each
// user's browser (session cookie) at idflow and at the dev issuer.

// mcpElicitingConnect opens an MCP session with a client that declares
// URL-mode elicitation (MCP 2025-11-25). The server never sends it an
// elicitation/create request: URL elicitation arrives as the -32042 error.
func mcpElicitingConnect(tb testing.TB, base, token string) *sdk.ClientSession {
	tb.Helper()
	b := &mcpBearer{base: mcpTransport}
	b.set(token)
	client := sdk.NewClient(&sdk.Implementation{Name: "idflow-go-test-eliciting-client", Version: "1.0.0"}, &sdk.ClientOptions{
		Capabilities: &sdk.ClientCapabilities{Elicitation: &sdk.ElicitationCapabilities{URL: &sdk.URLElicitationCapabilities{}}},
		ElicitationHandler: func(context.Context, *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
			return nil, errors.New("unexpected elicitation/create")
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := client.Connect(ctx, &sdk.StreamableClientTransport{
		Endpoint: base + "/mcp", HTTPClient: &http.Client{Transport: b}, MaxRetries: -1,
	}, nil)
	if err != nil {
		tb.Fatalf("MCP connect: %v", err)
	}
	tb.Cleanup(func() { _ = cs.Close() })
	return cs
}

// wantConnectElicitation calls name and requires the URL elicitation
// answer; it returns the elicitation.
func wantConnectElicitation(t *testing.T, cs *sdk.ClientSession, name string, args map[string]any) *sdk.ElicitParams {
	t.Helper()
	res, err := mcpTryCall(cs, name, args)
	var rpc *jsonrpc.Error
	if !errors.As(err, &rpc) || rpc.Code != sdk.CodeURLElicitationRequired {
		t.Fatalf("%s: %+v, %v; want the URL elicitation error %d", name, res, err, sdk.CodeURLElicitationRequired)
	}
	var data struct {
		Elicitations []*sdk.ElicitParams `json:"elicitations"`
	}
	if err := json.Unmarshal(rpc.Data, &data); err != nil || len(data.Elicitations) != 1 {
		t.Fatalf("elicitation data %s: %v", rpc.Data, err)
	}
	e := data.Elicitations[0]
	if e.Mode != "url" || e.ElicitationID == "" || !strings.Contains(e.Message, "dev") {
		t.Fatalf("elicitation %+v; want url mode, an id and a message naming the provider", e)
	}
	return e
}

// browserGet sends a GET as the browser holding s (its session cookie).
func browserGet(t *testing.T, target string, s session) reply {
	t.Helper()
	return rawDo(t, "GET", target, s.header(), "")
}

// TestMCPConnectElicitation: alice, without a connection to the dev
// provider, calls downstream_get through /mcp with a client that declares
// URL elicitation and gets a connect URL started for her; bob's browser
// following it is refused (not found, audited) and does not spend it;
// alice's browser completes it and the retried call acts as alice. A client
// without URL elicitation gets the plain tool error, as does an agent turn.
// disconnect removes only the caller's own connection, whatever user its
// arguments name.
func TestMCPConnectElicitation(t *testing.T) {
	t.Parallel()
	srv := startIdflow(t, map[string]string{"IDFLOW_LOG_LEVEL": "error"}, "--dev")
	k := oauthKit{base: srv.URL}
	const redirect = "http://127.0.0.1:33420/callback"
	clientID := k.register(t, "Connect test client", redirect)
	ck, csrf := sessionWithCSRF(t, srv.URL, "alice")
	alice := session{ck, csrf}
	ck, csrf = sessionWithCSRF(t, srv.URL, "bob")
	bob := session{ck, csrf}
	mcpToken := func(s session) string {
		v, ch := pkce()
		return k.exchange(t, clientID, redirect, k.code(t, s, clientID, redirect, ch), v).AccessToken
	}
	aliceTok, bobTok := mcpToken(alice), mcpToken(bob)
	ask := map[string]any{"provider": "dev", "path": "/whoami"}
	var me struct {
		UserID string `json:"user_id"`
	}
	browserGet(t, srv.URL+"/api/v1/me", bob).JSON(t, &me)
	bobID := me.UserID

	// A client without URL elicitation: today's tool error, naming the way to connect.
	plain, _ := mcpConnect(t, srv.URL, aliceTok)
	if res := mcpCall(t, plain, "downstream_get", ask); !res.IsError ||
		!strings.HasPrefix(res.Text, "conflict: ") || !strings.Contains(res.Text, "/api/v1/connections/dev/connect") {
		t.Fatalf("without URL elicitation: %v %q; want the tool error telling how to connect", res.IsError, res.Text)
	}

	acs := mcpElicitingConnect(t, srv.URL, aliceTok)
	e := wantConnectElicitation(t, acs, "downstream_get", ask)
	if !strings.HasPrefix(e.URL, srv.URL+"/dev/idp/authorize?") {
		t.Fatalf("elicitation URL %q; want the dev provider's authorize URL", e.URL)
	}
	state := ""
	if u, err := url.Parse(e.URL); err == nil {
		state = u.Query().Get("state")
	}
	if state == "" {
		t.Fatalf("elicitation URL %q carries no state", e.URL)
	}

	// bob's browser follows alice's URL: whoever he signs in as at the
	// provider, idflow refuses the callback with his session (the state is
	// alice's), and his attempt leaves her flow intact.
	for _, login := range []string{"bob", "alice"} {
		cb := devBrowserPick(t, e.URL, login)
		if cb.Path != "/api/v1/connections/dev/callback" || cb.Query().Get("state") != state {
			t.Fatalf("the dev issuer redirected to %s", cb)
		}
		checkProblem(t, browserGet(t, srv.URL+cb.Path+"?"+cb.RawQuery, bob), http.StatusNotFound)
	}
	var bobAudit idflow.List[idflow.AuditEvent]
	browserGet(t, srv.URL+"/api/v1/audit", bob).JSON(t, &bobAudit)
	if !containsAudit(bobAudit.Items, "connection.connect", idflow.OutcomeDenied) {
		t.Fatalf("bob's use of alice's connect URL is not in his audit trail: %+v", bobAudit.Items)
	}
	var conns idflow.List[idflow.Connection]
	browserGet(t, srv.URL+"/api/v1/connections", bob).JSON(t, &conns)
	if len(conns.Items) != 0 {
		t.Fatalf("bob has connections after following alice's URL: %+v", conns.Items)
	}

	// alice's browser completes it: the connection is hers.
	cb := devBrowserPick(t, e.URL, "alice")
	r := browserGet(t, srv.URL+cb.Path+"?"+cb.RawQuery, alice)
	mustStatus(t, r, http.StatusOK)
	var conn idflow.Connection
	r.JSON(t, &conn)
	if conn.Provider != "dev" || conn.UserID != "dev-alice" || conn.Status != idflow.ConnectionActive {
		t.Fatalf("alice's connection %+v", conn)
	}

	// The retried call succeeds, as alice; a user_id naming bob is stripped.
	var who struct {
		Status int `json:"status"`
		Body   struct{ Sub, Login string }
	}
	mcpCall(t, acs, "downstream_get", map[string]any{"provider": "dev", "path": "/whoami", "user_id": bobID}).decode(t, &who)
	if who.Status != http.StatusOK || who.Body.Login != "alice" || who.Body.Sub != "dev-alice" {
		t.Fatalf("retried downstream_get said %+v; want alice", who)
	}

	// bob is still not connected: his own elicitation, with his own state.
	bcs := mcpElicitingConnect(t, srv.URL, bobTok)
	be := wantConnectElicitation(t, bcs, "downstream_get", ask)
	if be.URL == e.URL || be.ElicitationID == e.ElicitationID {
		t.Fatal("bob's elicitation repeats alice's")
	}

	// An agent turn keeps the tool error (no MCP client to elicit).
	apiBob, err := devToken(t.Context(), srv.URL, "bob", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	sess := connJSON[idflow.ChatSession](t, srv.URL, "POST", "/api/v1/sessions", apiBob, map[string]any{"title": "connect"}, http.StatusCreated)
	turn := connJSON[struct {
		Steps []struct {
			Tool  string `json:"tool"`
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		} `json:"steps"`
	}](t, srv.URL, "POST", "/api/v1/sessions/"+sess.ID+"/messages", apiBob,
		map[string]any{"content": `/tool downstream_get {"provider":"dev","path":"/whoami"}`}, http.StatusCreated)
	if len(turn.Steps) != 1 || turn.Steps[0].OK || !strings.Contains(turn.Steps[0].Error, "/api/v1/connections/dev/connect") {
		t.Fatalf("agent turn steps %+v; want the tool error telling how to connect", turn.Steps)
	}

	// bob connects through his own elicitation too.
	bcb := devBrowserPick(t, be.URL, "bob")
	mustStatus(t, browserGet(t, srv.URL+bcb.Path+"?"+bcb.RawQuery, bob), http.StatusOK)

	// disconnect: alice's call naming bob removes alice's connection only.
	var out struct {
		Provider     string `json:"provider"`
		Disconnected bool   `json:"disconnected"`
	}
	mcpCall(t, acs, "disconnect", map[string]any{"provider": "dev", "user_id": bobID, "as_user": bobID}).decode(t, &out)
	if out.Provider != "dev" || !out.Disconnected {
		t.Fatalf("disconnect answered %+v", out)
	}
	browserGet(t, srv.URL+"/api/v1/connections", alice).JSON(t, &conns)
	if len(conns.Items) != 0 {
		t.Fatalf("alice still has %+v after disconnect", conns.Items)
	}
	browserGet(t, srv.URL+"/api/v1/connections", bob).JSON(t, &conns)
	if len(conns.Items) != 1 || conns.Items[0].Provider != "dev" || conns.Items[0].UserID != "dev-bob" {
		t.Fatalf("bob's connections after alice's disconnect naming him: %+v", conns.Items)
	}
	mcpCall(t, bcs, "downstream_get", ask).decode(t, &who)
	if who.Body.Login != "bob" {
		t.Fatalf("bob's downstream_get after alice's disconnect: %+v", who)
	}
	var aliceAudit idflow.List[idflow.AuditEvent]
	browserGet(t, srv.URL+"/api/v1/audit?limit=200", alice).JSON(t, &aliceAudit)
	var deleted, stripped bool
	for _, ev := range aliceAudit.Items {
		deleted = deleted || (ev.Action == "connection.delete" && ev.Outcome == idflow.OutcomeSuccess && ev.Resource == "connection/dev")
		stripped = stripped || (ev.Resource == "tool/disconnect/argument/user_id" && ev.Outcome == idflow.OutcomeDenied)
	}
	if !deleted || !stripped {
		t.Fatalf("alice's audit trail: connection.delete %v, user_id removal %v: %+v", deleted, stripped, aliceAudit.Items)
	}

	// Disconnected, the next call elicits again; disconnecting twice is not found.
	wantConnectElicitation(t, acs, "downstream_get", ask)
	if res := mcpCall(t, acs, "disconnect", map[string]any{"provider": "dev"}); !res.IsError || !strings.HasPrefix(res.Text, "not_found: ") {
		t.Fatalf("disconnecting twice: %v %q", res.IsError, res.Text)
	}
}

// tsConnectOutput is what testdata/mcpclient/connect.mjs prints.
type tsConnectOutput struct {
	Elicitations []*sdk.ElicitParams `json:"elicitations"`
	IsError      bool                `json:"isError"`
	Structured   json.RawMessage     `json:"structured"`
	Text         string              `json:"text"`
}

// TestMCPConnectElicitationTypeScript: the official TypeScript SDK client
// (pinned in testdata/mcpclient) reads idflow's URL elicitation as its own
// UrlElicitationRequiredError when it declares URL elicitation, and the
// plain tool error when it does not; once alice's browser completes the
// elicited URL, the same call succeeds as alice.
func TestMCPConnectElicitationTypeScript(t *testing.T) {
	t.Parallel()
	node := testsvc.Node(t)
	dir := testsvc.RepoDir(t, "testdata/mcpclient")
	testsvc.NPMInstall(t, dir)
	srv := startIdflow(t, map[string]string{"IDFLOW_LOG_LEVEL": "error"}, "--dev")
	k := oauthKit{base: srv.URL}
	const redirect = "http://127.0.0.1:33421/callback"
	clientID := k.register(t, "TypeScript connect client", redirect)
	ck, csrf := sessionWithCSRF(t, srv.URL, "alice")
	alice := session{ck, csrf}
	v, ch := pkce()
	token := k.exchange(t, clientID, redirect, k.code(t, alice, clientID, redirect, ch), v).AccessToken

	run := func(mode string) tsConnectOutput {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "connect.mjs"), srv.URL+"/mcp", "dev", mode)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "IDFLOW_MCP_TOKEN="+token)
		var stderr syncBuffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node connect.mjs %s: %v\n%s", mode, err, stderr.String())
		}
		var o tsConnectOutput
		if err := json.Unmarshal(out, &o); err != nil {
			t.Fatalf("connect.mjs printed %q: %v", out, err)
		}
		return o
	}

	if o := run("none"); len(o.Elicitations) != 0 || !o.IsError || !strings.Contains(o.Text, "/api/v1/connections/dev/connect") {
		t.Fatalf("without URL elicitation: %+v; want the tool error telling how to connect", o)
	}
	o := run("url")
	if len(o.Elicitations) != 1 || o.Elicitations[0].Mode != "url" || o.Elicitations[0].ElicitationID == "" ||
		!strings.HasPrefix(o.Elicitations[0].URL, srv.URL+"/dev/idp/authorize?") {
		t.Fatalf("with URL elicitation: %+v; want one URL elicitation of the dev provider", o)
	}
	cb := devBrowserPick(t, o.Elicitations[0].URL, "alice")
	mustStatus(t, browserGet(t, srv.URL+cb.Path+"?"+cb.RawQuery, alice), http.StatusOK)
	o = run("url")
	var who struct {
		Body struct{ Login string }
	}
	if o.IsError || len(o.Elicitations) != 0 || json.Unmarshal(o.Structured, &who) != nil || who.Body.Login != "alice" {
		t.Fatalf("after connecting: %+v; want downstream_get as alice", o)
	}
}
