package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/internal/testsvc"
	"github.com/idflow/idflow/postgres"
)

// This file tests the deployment kit in deploy/: the nginx configurations
// (rendered from the very files in deploy/nginx, placeholders filled in,
// and run in a real nginx) in front of two idflow replicas — separate
// processes (the re-exec of main_test.go) sharing a real PostgreSQL (owner
// role for migrations, app role for serving) and a real Redis (cache and
// run-event bus) — in production mode against an authtest issuer.
//
// TestDeployKit runs its parts in order on one set of services:
//
//	a  a run started on replica A streams every event to a WebSocket held on
//	   replica B (and through nginx); another user's socket gets 404
//	m  MCP sessions through nginx stay on the replica that holds them
//	b  forged identity headers never reach an application (forward-auth) or
//	   idflow (replicas) as an identity; directly, they are refused and audited
//	c  kill -9 of replica A under write load through nginx loses no
//	   acknowledged write and duplicates none
//
// Names in this file start with deploy so they cannot collide with other
// harnesses.

// deployWorld is the shared part: services, keys, tokens, the replicas.
type deployWorld struct {
	nginxBin  string
	iss       *authtest.Issuer
	db        *testsvc.Database
	publicURL string // the replicas' nginx, which idflow's public URL names
	nginxPort int

	base              map[string]string // environment of every replica
	alice, bob, admin string            // bearer tokens

	a, b *runsChild
}

// deployToken signs a one-hour user token.
func deployToken(iss *authtest.Issuer, login string, roles ...string) string {
	now := time.Now()
	c := iss.OIDC(login).
		With("tid", "t-one").
		With("name", login).
		With("email", login+"@example.test").
		With("iat", now.Unix()).
		With("exp", now.Add(time.Hour).Unix())
	if len(roles) > 0 {
		c = c.With("roles", roles)
	}
	return iss.Token(c)
}

// deployKeys returns a vault key and an assertion signing key, shared by
// every replica through configuration, never through a data dir.
func deployKeys(t *testing.T) (vaultKey, assertionKey string) {
	t.Helper()
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Base64 DER on one line, as an environment file holds it
	// (deploy/systemd/idflow.env.example).
	return base64.StdEncoding.EncodeToString(raw), base64.StdEncoding.EncodeToString(der)
}

// startReplica starts one idflow replica as a separate process on a free
// loopback port, with the shared environment and extra on top.
// It runs until t ends.
func (w *deployWorld) startReplica(t *testing.T, extra map[string]string) *runsChild {
	t.Helper()
	env := map[string]string{}
	for k, v := range w.base {
		env[k] = v
	}
	env["IDFLOW_LISTEN"] = "127.0.0.1:" + strconv.Itoa(testsvc.FreePort(t))
	env["IDFLOW_DATA_DIR"] = t.TempDir() // a cache only: replicas share nothing through it
	for k, v := range extra {
		env[k] = v
	}
	return startRunsChild(t, env)
}

func (w *deployWorld) hostA() string { return strings.TrimPrefix(w.a.URL, "http://") }
func (w *deployWorld) hostB() string { return strings.TrimPrefix(w.b.URL, "http://") }

func TestDeployKit(t *testing.T) {
	w := &deployWorld{nginxBin: testsvc.NginxPath(t)}
	pg := testsvc.StartPostgres(t)
	w.db = pg.NewDatabase(t)
	redisAddr := testsvc.StartRedis(t)
	w.iss = authtest.NewIssuer(t)
	w.alice, w.bob = deployToken(w.iss, "alice"), deployToken(w.iss, "bob")
	// Spoofing attempts are audited with no tenant (nobody was
	// authenticated): the platform admin reads them.
	w.admin = deployToken(w.iss, "deploy-admin", "platform-admin")
	w.nginxPort = testsvc.FreePort(t)
	w.publicURL = "http://127.0.0.1:" + strconv.Itoa(w.nginxPort)
	vaultKey, assertionKey := deployKeys(t)
	w.base = map[string]string{
		"IDFLOW_OIDC_ISSUER":          w.iss.Issuer(),
		"IDFLOW_OIDC_AUDIENCE":        w.iss.Audience(),
		"IDFLOW_PUBLIC_URL":           w.publicURL,
		"IDFLOW_DATABASE_URL":         w.db.AppURL,
		"IDFLOW_MIGRATE_DATABASE_URL": w.db.OwnerURL, // serve migrates at start too (a no-op once done)
		"IDFLOW_CACHE_URL":            "redis://" + redisAddr + "/0",
		"IDFLOW_VAULT_KEY":            vaultKey,
		"IDFLOW_ASSERTION_KEY":        assertionKey,
		"IDFLOW_LOG_LEVEL":            "warn",
		"IDFLOW_PLATFORM_ADMIN_ROLE":  "platform-admin",
		// The write load of c is one user far faster than a person.
		"IDFLOW_RATE_LIMITS": "read=off,write=off,turn=off,ingest=off,mcp=off,ws=off",
	}

	// The operator's first step: `idflow migrate` as the schema owner.
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"migrate"}, func(k string) string { return w.base[k] }, &out, &errOut); err != nil {
		t.Fatalf("idflow migrate: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "granted") {
		t.Fatalf("idflow migrate said %q", out.String())
	}

	// Replica A trusts the proxy address 127.0.0.1 (nginx's, here) for
	// identity headers, so that part b can show what stripping them is
	// worth; replica B trusts nobody.
	w.a = w.startReplica(t, map[string]string{"IDFLOW_TRUSTED_PROXIES": "127.0.0.1/32"})

	t.Run("a_run_on_A_streams_to_socket_on_B", func(st *testing.T) { deployRunAcrossReplicas(st, t, w) })
	if w.b == nil {
		t.Fatal("replica B did not start")
	}
	nx := startDeployNginx(t, w.nginxBin, "idflow-replicas.conf", w.nginxPort, map[string]string{
		"IDFLOW_REPLICA_A": w.hostA(),
		"IDFLOW_REPLICA_B": w.hostB(),
	})
	t.Run("a_run_and_socket_through_nginx", func(t *testing.T) { deployRunThroughNginx(t, w, nx) })
	t.Run("m_mcp_sessions_stay_on_their_replica", func(t *testing.T) { deployMCPThroughNginx(t, w, nx) })
	t.Run("b_forged_identity_headers", func(t *testing.T) { deployForgedHeaders(t, w, nx) })
	t.Run("c_kill_replica_under_write_load", func(t *testing.T) { deployKillUnderLoad(t, w, nx) })
}

// ---- a: run events across replicas ----

// deployWorkflow is a run of a few wait steps: long enough to hold a
// socket open across it, short enough for a test.
func deployWorkflow(t *testing.T, base, token string, steps int, ms int) idflow.Workflow {
	t.Helper()
	var def []idflow.Step
	for i := 1; i <= steps; i++ {
		def = append(def, idflow.Step{ID: fmt.Sprintf("wait%d", i), Type: idflow.StepWait, Ms: ms})
	}
	return runsWorkflow(t, base, token, "deploy waits", def...)
}

// deployDial opens token's run socket the browser way (subprotocols
// idflow.v1 and bearer.<token>), tagged for nginx's access log.
func deployDial(ctx context.Context, wsBase, runID, token, tag string) (*websocket.Conn, *http.Response, error) {
	return websocket.Dial(ctx, wsBase+"/ws/execution/"+runID, &websocket.DialOptions{
		Subprotocols: []string{"idflow.v1", "bearer." + token},
		HTTPHeader:   http.Header{"X-Deploy-Tag": {tag}},
	})
}

// deployRespStatus describes a handshake's HTTP answer for a failure message.
func deployRespStatus(resp *http.Response) string {
	if resp == nil {
		return "no HTTP response"
	}
	return resp.Status
}

// deployReadAll reads events until the socket closes; it answers them, the
// close status (-1: no close frame) and the read error without one.
func deployReadAll(ctx context.Context, c *websocket.Conn) ([]idflow.Event, websocket.StatusCode, error) {
	c.SetReadLimit(1 << 20)
	var evs []idflow.Event
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			if st := websocket.CloseStatus(err); st != -1 {
				return evs, st, nil
			}
			return evs, -1, err
		}
		var e idflow.Event
		if err := json.Unmarshal(b, &e); err != nil {
			return evs, -1, fmt.Errorf("event %s: %w", b, err)
		}
		evs = append(evs, e)
	}
}

// deployWatchRun holds alice's socket on wsBase for runID to its end and
// checks the stream: the whole history, seq 1..n, every event alice's,
// ending with run.completed and the 1000 close. It answers how many events
// were replayed (stored before the dial) and how many arrived live (stored
// after the socket was open).
func deployWatchRun(t *testing.T, wsBase, runID, token, tag string, steps int) (history, live int, evs []idflow.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dialStart := time.Now()
	c, resp, err := deployDial(ctx, wsBase, runID, token, tag)
	if err != nil {
		t.Fatalf("alice's socket on %s: %v (%s)", wsBase, err, deployRespStatus(resp))
	}
	defer c.CloseNow()
	dialDone := time.Now()
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "idflow.v1" {
		t.Fatalf("the server answered subprotocol %q; want idflow.v1 (and never the token)", got)
	}
	evs, status, err := deployReadAll(ctx, c)
	if err != nil {
		t.Fatalf("alice's socket on %s: %v after:%s", wsBase, err, runsDescribe(evs))
	}
	runsCheckSeq(t, evs)
	for _, e := range evs {
		if e.UserID != "alice" || e.RunID != runID {
			t.Fatalf("alice's socket received an event of user %q, run %q:%s", e.UserID, e.RunID, runsDescribe(evs))
		}
		switch {
		case e.At.Before(dialStart):
			history++
		case e.At.After(dialDone):
			live++
		}
	}
	if len(evs) == 0 || evs[len(evs)-1].Type != idflow.EventRunCompleted || status != websocket.StatusNormalClosure {
		t.Fatalf("alice's socket closed with %d after:%s\nwant 1000 right after run.completed", status, runsDescribe(evs))
	}
	if n := runsCount(evs, idflow.EventStepCompleted, ""); n != steps {
		t.Fatalf("%d step.completed events; want %d:%s", n, steps, runsDescribe(evs))
	}
	return history, live, evs
}

// deployBobRefused requires bob's socket on alice's run to be refused with
// 404 before any upgrade, as if the run did not exist.
func deployBobRefused(t *testing.T, wsBase, runID, token, tag string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, resp, err := deployDial(ctx, wsBase, runID, token, tag)
	if err == nil {
		c.CloseNow()
		t.Fatalf("bob opened a socket on alice's run %s via %s", runID, wsBase)
	}
	if resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("bob's socket on alice's run via %s: %v (%s); want 404", wsBase, err, deployRespStatus(resp))
	}
}

// deployRunAcrossReplicas: alice starts a run through replica A while only
// A is up, so that A's worker runs it; then replica B starts, and her
// socket on B receives the history and then the live events A's worker
// produces — through Redis, the only thing the two processes share besides
// PostgreSQL. B is started on top, the whole test, which it serves to the
// end.
func deployRunAcrossReplicas(t, top *testing.T, w *deployWorld) {
	const steps = 10
	wf := deployWorkflow(t, w.a.URL, w.alice, steps, 500)
	run := runsStart(t, w.a.URL, w.alice, wf.ID, 0, nil)
	runsWaitEvent(t, w.a.URL, w.alice, run.ID, 30*time.Second, "run.started on A",
		func(e idflow.Event) bool { return e.Type == idflow.EventRunStarted })

	started := time.Now()
	w.b = w.startReplica(top, nil) // no trusted proxies at all
	t.Logf("replica B healthy %s after the run started", time.Since(started).Round(time.Millisecond))

	history, live, evs := deployWatchRun(t, "ws://"+w.hostB(), run.ID, w.alice, "a-direct", steps)
	t.Logf("socket on B: %d events of the run worked on A (%d replayed, %d live), closed 1000", len(evs), history, live)
	if history == 0 || live == 0 {
		t.Fatalf("socket on B: %d replayed and %d live events; want both (B's start took too long for the run?)", history, live)
	}
	// What B streamed is exactly what the database holds.
	stored := runsEvents(t, w.b.URL, w.alice, run.ID)
	if len(stored) != len(evs) {
		t.Fatalf("B streamed %d events, the run has %d stored:%s", len(evs), len(stored), runsDescribe(stored))
	}
	deployBobRefused(t, "ws://"+w.hostB(), run.ID, w.bob, "a-direct-bob")
}

// deployRunThroughNginx: the same through nginx, where round robin sends
// the start of the run and the socket to different replicas.
func deployRunThroughNginx(t *testing.T, w *deployWorld, nx *deployNginx) {
	const steps = 6
	wf := deployWorkflow(t, nx.URL, w.alice, steps, 400)
	run := deployTagged[idflow.Run](t, nx.URL, "POST", "/api/v1/workflows/"+wf.ID+"/runs", w.alice, "a-nginx-start",
		map[string]any{"input": nil}, http.StatusAccepted)
	_, live, evs := deployWatchRun(t, "ws://"+nx.Host(), run.ID, w.alice, "a-nginx-ws", steps)
	if live == 0 {
		t.Fatalf("no live event through nginx:%s", runsDescribe(evs))
	}
	deployBobRefused(t, "ws://"+nx.Host(), run.ID, w.bob, "a-nginx-bob")

	start, ws, bob := nx.line(t, "a-nginx-start"), nx.line(t, "a-nginx-ws"), nx.line(t, "a-nginx-bob")
	if ws.Status != "101" || bob.Status != "404" {
		t.Fatalf("nginx logged the socket with %s and bob's with %s; want 101 and 404", ws.Status, bob.Status)
	}
	if start.Upstream == ws.Upstream {
		t.Fatalf("the run was started on %s and its socket held on %s; round robin should have alternated", start.Upstream, ws.Upstream)
	}
	t.Logf("through nginx: run started on %s, socket on %s: %d events, %d live, closed 1000; bob 404", start.Upstream, ws.Upstream, len(evs), live)
}

// deployTagged sends one JSON request tagged for nginx's access log and
// decodes the answer, which must have status want.
func deployTagged[T any](t *testing.T, base, method, path, token, tag string, body any, want int) T {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, base+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Deploy-Tag", tag)
	resp, err := runsHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s; want %d", method, path, resp.StatusCode, data, want)
	}
	var out T
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s %s: %v: %s", method, path, err, data)
	}
	return out
}

// ---- m: MCP sessions through nginx ----

// deployMe is the part of GET /api/v1/me part b reads.
type deployMe struct {
	UserID     string   `json:"user_id"`
	Roles      []string `json:"roles"`
	AuthMethod string   `json:"auth_method"`
}

type deployWhoami struct {
	UserID string `json:"user_id"`
	Kind   string `json:"kind"`
}

// deployMCPThroughNginx opens MCP sessions through nginx — raw HTTP and the
// go-sdk client, whose GET stream goes through nginx too — and requires
// every request of a session to reach the replica that opened it.
func deployMCPThroughNginx(t *testing.T, w *deployWorld, nx *deployNginx) {
	// nginx picks a new session's replica at random: open sessions until
	// both replicas hold some (at least 8; 40 all on one side would be a
	// broken split, not bad luck).
	sids := map[string]bool{}
	tags := map[string]int{}
	var first string
	for i := 0; i < 8 || len(tags) < 2; i++ {
		if i == 40 {
			t.Fatalf("40 MCP sessions through nginx, by replica tag: %v; want both replicas", tags)
		}
		sid := mcpRawSession(t, nx.URL, w.alice)
		tag, _, _ := strings.Cut(sid, ".")
		if tag != "a" && tag != "b" {
			t.Fatalf("nginx handed out session id %q; want it tagged with its replica (a. or b.)", sid)
		}
		tags[tag]++
		sids[sid] = true
		if first == "" {
			first = sid
		}
		for call := 0; call < 2; call++ {
			resp, body := mcpHTTP(t, "POST", nx.URL, w.alice, sid, mcpCallBody(t, "whoami", nil))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("session %d (%s), call %d through nginx: %d %s", i, sid, call, resp.StatusCode, body)
			}
			var who deployWhoami
			if err := json.Unmarshal(mcpSSEResult(t, body).StructuredContent, &who); err != nil || who.UserID != "alice" {
				t.Fatalf("whoami through nginx: %s (%v); want alice", body, err)
			}
		}
	}
	// The same session id under the other replica's tag reaches the other
	// replica, which does not know it: the tag is what routes.
	tag, id, _ := strings.Cut(first, ".")
	other := map[string]string{"a": "b.", "b": "a."}[tag] + id
	if resp, body := mcpHTTP(t, "POST", nx.URL, w.alice, other, mcpCallBody(t, "whoami", nil)); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("session %s re-tagged as %s: %d %s; want 404 from the other replica", first, other, resp.StatusCode, body)
	}
	// The go-sdk client, with its server-to-client GET stream.
	for i := 0; i < 2; i++ {
		cs, _ := mcpConnect(t, nx.URL, w.alice)
		for call := 0; call < 3; call++ {
			var who deployWhoami
			mcpCall(t, cs, "whoami", nil).decode(t, &who)
			if who.UserID != "alice" || who.Kind != "user" {
				t.Fatalf("go-sdk whoami through nginx: %+v", who)
			}
		}
		sids[cs.ID()] = true
		if err := cs.Close(); err != nil {
			t.Fatalf("closing the go-sdk session: %v", err)
		}
	}

	// nginx's log: every request that carried a session id went to the
	// replica its tag names, and sessions were opened on both replicas.
	tagHost := map[string]string{"a": w.hostA(), "b": w.hostB()}
	perReplica := map[string]int{}
	n := 0
	for _, l := range nx.synced(t) {
		if l.URI != "/mcp" || l.MCPSession == "" || l.MCPSession == "-" {
			continue
		}
		if !sids[l.MCPSession] {
			continue // the re-tagged probe
		}
		n++
		tag, _, _ := strings.Cut(l.MCPSession, ".")
		want := tagHost[tag]
		if l.Upstream != want {
			t.Fatalf("a request of MCP session %s went to %s; its replica is %s", l.MCPSession, l.Upstream, want)
		}
		perReplica[want]++
	}
	if perReplica[w.hostA()] == 0 || perReplica[w.hostB()] == 0 {
		t.Fatalf("MCP session requests per replica: %v; want sessions on both", perReplica)
	}
	t.Logf("MCP through nginx: %d sessions, %d requests with a session id, per replica %v, none misrouted", len(sids), n, perReplica)
}

// ---- b: forged identity headers ----

// deployEchoed is what the protected test application received.
type deployEchoed struct {
	Method string      `json:"method"`
	Body   string      `json:"body"`
	Header http.Header `json:"header"`
}

// deployEcho is the protected application behind the forward-auth nginx: it
// answers every request with the headers it received (a WebSocket with one
// message of them).
func deployEcho(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		e := deployEchoed{Method: r.Method, Body: string(body), Header: r.Header.Clone()}
		b, _ := json.Marshal(e)
		if strings.HasPrefix(r.URL.Path, "/ws/") {
			c, err := websocket.Accept(rw, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			if c.Write(ctx, websocket.MessageText, b) == nil {
				c.Close(websocket.StatusNormalClosure, "")
			}
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		rw.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// deployForged are identity headers a client makes up: alice's id, the
// admin role, alice's genuine (but not hers to send) assertion, and the
// identity headers of other conventions.
func deployForged(aliceAssertion string) http.Header {
	return http.Header{
		"X-Authenticated-User":   {"alice", "alice"},
		"x-authenticated-user":   {"alice"}, // sent in lower case, as is
		"X-Authenticated-Email":  {"alice@example.test"},
		"X-Authenticated-Name":   {"alice"},
		"X-Authenticated-Tenant": {"t-evil"},
		"X-Authenticated-Roles":  {"admin"},
		"X-Authenticated-Groups": {"admins"},
		"X-Idflow-Assertion":     {aliceAssertion},
		"X-User-Email":           {"alice@example.test"},
		"X-Forwarded-User":       {"alice"},
		"Remote-User":            {"alice"},
		"X-Forwarded-For":        {"10.9.9.9"},
	}
}

// deployDo sends one request with extra headers (added as given, so a
// non-canonical name stays so on the wire) from the local address from
// (empty: any).
func deployDo(t *testing.T, from, method, url, token string, hdr http.Header, body string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = append(req.Header[k], vs...)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := runsHTTP
	if from != "" {
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true}}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// deployVerifyAssertion verifies an X-Idflow-Assertion the way an
// application would: against idflow's JWKS, with idflow's public URL as
// issuer and audience.
func deployVerifyAssertion(t *testing.T, jwksFrom, publicURL, raw string) idflow.Principal {
	t.Helper()
	keys := auth.NewRemoteKeySet(jwksFrom+"/.well-known/idflow/jwks.json", nil, 0, slog.New(slog.DiscardHandler))
	v, err := auth.NewAssertionVerifier(publicURL, publicURL, keys)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("the assertion the application received does not verify: %v", err)
	}
	return tok.Principal
}

func deployForgedHeaders(t *testing.T, w *deployWorld, nx *deployNginx) {
	// alice's genuine assertion, as a client could have captured it: valid
	// signature, just not the sender's.
	st, h, body := deployDo(t, "", "GET", w.a.URL+"/auth/validate", w.alice, nil, "")
	aliceAssertion := h.Get("X-Idflow-Assertion")
	if st != http.StatusOK || h.Get("X-Authenticated-User") != "alice" || aliceAssertion == "" {
		t.Fatalf("alice's /auth/validate: %d %v %s", st, h, body)
	}
	forged := deployForged(aliceAssertion)
	// The plain forgery: each header once, as a trusted proxy would send it.
	forgedPlain := http.Header{"X-Authenticated-User": {"alice"}, "X-Authenticated-Roles": {"admin"}, "X-Idflow-Assertion": {aliceAssertion}}

	t.Run("forward_auth", func(t *testing.T) {
		app, hits := deployEcho(t)
		fa := startDeployNginx(t, w.nginxBin, "idflow-forward-auth.conf", testsvc.FreePort(t), map[string]string{
			"IDFLOW_AUTH_UPSTREAM": w.hostA(), // the replica that trusts 127.0.0.1, nginx's address
			"IDFLOW_APP_UPSTREAM":  strings.TrimPrefix(app.URL, "http://"),
		})
		echoed := func(code int, b []byte) deployEchoed {
			t.Helper()
			if code != http.StatusOK {
				t.Fatalf("through forward-auth: %d %s; want the application's 200", code, b)
			}
			var e deployEchoed
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("application answer %s: %v", b, err)
			}
			return e
		}
		checkIdentity := func(e deployEchoed, login string) {
			t.Helper()
			want := map[string][]string{
				"X-Authenticated-User":   {login},
				"X-Authenticated-Email":  {login + "@example.test"},
				"X-Authenticated-Name":   {login},
				"X-Authenticated-Tenant": {"t-one"},
				"X-Forwarded-For":        {"127.0.0.1"},
			}
			for name, v := range want {
				if got := e.Header.Values(name); !slices.Equal(got, v) {
					t.Errorf("the application received %s: %q; want %q", name, got, v)
				}
			}
			for _, name := range []string{"X-Authenticated-Roles", "X-Authenticated-Groups", "X-User-Email",
				"X-Forwarded-User", "Remote-User", "Authorization"} {
				if got := e.Header.Values(name); len(got) != 0 {
					t.Errorf("the application received %s: %q; want none (the user has none / never from a client)", name, got)
				}
			}
			as := e.Header.Values("X-Idflow-Assertion")
			if len(as) != 1 || as[0] == aliceAssertion && login != "alice" {
				t.Fatalf("the application received assertions %d (alice's forged one among them: %v)", len(as), slices.Contains(as, aliceAssertion))
			}
			// Verified against replica B's keys: both replicas sign with the
			// key they were configured with.
			if p := deployVerifyAssertion(t, w.b.URL, w.publicURL, as[0]); p.UserID != login || len(p.Roles) != 0 {
				t.Errorf("the application's assertion states %+v; want %s without roles", p, login)
			}
			raw, _ := json.Marshal(e.Header)
			for _, bad := range []string{"t-evil", "admins", "10.9.9.9"} {
				if bytes.Contains(raw, []byte(bad)) {
					t.Errorf("a forged value %q reached the application: %s", bad, raw)
				}
			}
			if login != "alice" && bytes.Contains(raw, []byte("alice")) {
				t.Errorf("alice's forged identity reached the application on %s's request: %s", login, raw)
			}
			if t.Failed() {
				t.FailNow()
			}
		}

		// Bob's token with alice's identity forged next to it: the
		// application sees bob, only bob, and no forged value.
		code, _, b := deployDo(t, "", "GET", fa.URL+"/reports?x=1", w.bob, forged, "")
		checkIdentity(echoed(code, b), "bob")
		// The same for a POST: its body reaches the application, the auth
		// subrequest never carried it.
		code, _, b = deployDo(t, "", "POST", fa.URL+"/reports", w.bob, forged, `{"n":1}`)
		if e := echoed(code, b); e.Method != "POST" || e.Body != `{"n":1}` {
			t.Fatalf("POST through forward-auth arrived as %s %q", e.Method, e.Body)
		} else {
			checkIdentity(e, "bob")
		}
		// A positive control: alice's own token is alice.
		code, _, b = deployDo(t, "", "GET", fa.URL+"/reports", w.alice, nil, "")
		checkIdentity(echoed(code, b), "alice")

		// A WebSocket handshake is authenticated the same way.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		hdr := forged.Clone()
		delete(hdr, "x-authenticated-user") // the WebSocket client canonicalizes; sent canonical above
		hdr.Set("Authorization", "Bearer "+w.bob)
		c, resp, err := websocket.Dial(ctx, "ws://"+fa.Host()+"/ws/chat", &websocket.DialOptions{HTTPHeader: hdr})
		if err != nil {
			t.Fatalf("WebSocket through forward-auth: %v (%s)", err, deployRespStatus(resp))
		}
		_, msg, err := c.Read(ctx)
		c.CloseNow()
		if err != nil {
			t.Fatal(err)
		}
		checkIdentity(echoed(http.StatusOK, msg), "bob")

		// No token: nginx refuses (401 from the auth subrequest) and the
		// application never sees the request. idflow trusts this nginx's
		// address, so this also proves the subrequest itself is stripped:
		// otherwise idflow would have answered "alice".
		before := hits.Load()
		for i, hd := range []http.Header{forgedPlain, forged, nil} {
			code, h, b := deployDo(t, "", "GET", fa.URL+"/reports", "", hd, "")
			if code != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("no token (forged headers, case %d) through forward-auth: %d %v %s; want 401 with a Bearer challenge", i, code, h, b)
			}
		}
		if code, _, b := deployDo(t, "", "GET", fa.URL+"/reports", "not-a-jwt", forged, ""); code != http.StatusUnauthorized {
			t.Fatalf("a bad token through forward-auth: %d %s; want 401", code, b)
		}
		if _, resp, err := websocket.Dial(ctx, "ws://"+fa.Host()+"/ws/chat", &websocket.DialOptions{HTTPHeader: forged.Clone()}); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a WebSocket with only forged headers through forward-auth: %v (%s); want 401", err, deployRespStatus(resp))
		}
		if n := hits.Load() - before; n != 0 {
			t.Fatalf("the application received %d requests that nginx should have refused", n)
		}
		// /auth/validate is nginx's internal business, not the public's.
		if code, _, _ := deployDo(t, "", "GET", fa.URL+"/auth/validate", w.bob, nil, ""); code != http.StatusNotFound {
			t.Fatalf("GET /auth/validate through forward-auth: %d; want 404", code)
		}
		t.Logf("forward-auth: the application saw only verified identities; %d requests reached it, none of the refused ones", hits.Load())
	})

	t.Run("replicas", func(t *testing.T) {
		// Through nginx, round robin alternates between A (which trusts
		// nginx's address) and B: twice each way covers both.
		for i := 0; i < 2; i++ {
			for j, forgery := range []http.Header{forgedPlain, forged} {
				hd := forgery.Clone()
				hd.Set("X-Deploy-Tag", fmt.Sprintf("b-forged-anon-%d-%d", i, j))
				if code, _, b := deployDo(t, "", "GET", nx.URL+"/api/v1/me", "", hd, ""); code != http.StatusUnauthorized {
					t.Fatalf("forged headers (case %d) without a token through nginx: %d %s; want 401", j, code, b)
				}
			}
			hd := forged.Clone()
			hd.Set("X-Deploy-Tag", fmt.Sprintf("b-forged-bob-%d", i))
			code, _, b := deployDo(t, "", "GET", nx.URL+"/api/v1/me", w.bob, hd, "")
			var m deployMe
			if code != http.StatusOK || json.Unmarshal(b, &m) != nil || m.UserID != "bob" || m.AuthMethod != string(idflow.AuthBearer) || len(m.Roles) != 0 {
				t.Fatalf("bob with forged headers through nginx: %d %s; want bob by his token, no roles", code, b)
			}
		}
		ups := map[string]bool{}
		for _, l := range nx.synced(t) {
			if strings.HasPrefix(l.Tag, "b-forged-") {
				ups[l.Upstream] = true
			}
		}
		if !ups[w.hostA()] || !ups[w.hostB()] {
			t.Fatalf("forged requests reached %v; want both replicas", ups)
		}
	})

	t.Run("direct", func(t *testing.T) {
		// Straight to a replica from a peer it does not trust: 401, audited
		// as a spoofing attempt. B trusts nobody; A trusts 127.0.0.1 only,
		// so the attacker comes from 127.0.0.2.
		cases := []struct{ name, from, url string }{
			{"B from 127.0.0.1", "127.0.0.1", w.b.URL},
			{"A from 127.0.0.2", "127.0.0.2", w.a.URL},
		}
		var reqIDs []string
		for i, c := range cases {
			rid := fmt.Sprintf("deploy-spoof-%d-%d", i, time.Now().UnixNano())
			reqIDs = append(reqIDs, rid)
			hd := forged.Clone()
			hd.Set("X-Request-Id", rid)
			code, _, b := deployDo(t, c.from, "GET", c.url+"/api/v1/me", "", hd, "")
			if code != http.StatusUnauthorized {
				t.Fatalf("%s, forged headers: %d %s; want 401", c.name, code, b)
			}
			// A valid token next to them does not help either.
			if code, _, b := deployDo(t, c.from, "GET", c.url+"/api/v1/me", w.bob, hd, ""); code != http.StatusUnauthorized {
				t.Fatalf("%s, bob's token and forged headers: %d %s; want 401", c.name, code, b)
			}
		}
		type auditItem struct {
			UserID    string `json:"user_id"`
			Outcome   string `json:"outcome"`
			RequestID string `json:"request_id"`
			Detail    string `json:"detail"`
			Peer      string `json:"peer"`
		}
		var audits []auditItem
		for cursor, pages := "", 0; pages == 0 || cursor != ""; pages++ {
			pg := runsJSON[struct {
				Items      []auditItem `json:"items"`
				NextCursor string      `json:"next_cursor"`
			}](t, w.b.URL, "GET", "/api/v1/admin/audit?limit=200&cursor="+cursor, w.admin, nil, http.StatusOK)
			audits = append(audits, pg.Items...)
			cursor = pg.NextCursor
		}
		for i, rid := range reqIDs {
			found := 0
			for _, e := range audits {
				if e.RequestID == rid {
					found++
					if e.Outcome != string(idflow.OutcomeDenied) || e.UserID != "" || !strings.Contains(e.Detail, "spoofed") ||
						!strings.HasPrefix(e.Peer, cases[i].from+":") {
						t.Fatalf("%s: audit event %+v; want a denied spoofing attempt from %s", cases[i].name, e, cases[i].from)
					}
				}
			}
			if found != 2 {
				t.Fatalf("%s: %d audit events for the two requests %s; want 2", cases[i].name, found, rid)
			}
		}
		// Why only nginx may reach idflow: the trust is the peer's address,
		// and from nginx's address (127.0.0.1, in A's IDFLOW_TRUSTED_PROXIES)
		// the very same headers ARE an identity. nginx strips them (above);
		// the network must keep everyone else away (deploy/README.md).
		code, _, b := deployDo(t, "127.0.0.1", "GET", w.a.URL+"/api/v1/me", "", http.Header{"X-Authenticated-User": {"alice"}}, "")
		var m deployMe
		if code != http.StatusOK || json.Unmarshal(b, &m) != nil || m.UserID != "alice" || m.AuthMethod != string(idflow.AuthProxyHeader) {
			t.Fatalf("the plain header from the trusted address: %d %s; want alice by proxy header", code, b)
		}
	})
}

// ---- c: kill -9 under write load ----

// deployWrite is the outcome of one POST /api/v1/facts through nginx.
type deployWrite struct {
	tag, content string
	status       int    // 0: no HTTP answer
	id           string // set when acknowledged (201)
	err          string
	at           time.Time
}

func deployKillUnderLoad(t *testing.T, w *deployWorld, nx *deployNginx) {
	const writers = 8
	marker := fmt.Sprintf("deploy-kill-%d", time.Now().UnixNano())
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: writers * 2}}
	defer client.CloseIdleConnections()

	var (
		mu     sync.Mutex
		writes []deployWrite
		acks   atomic.Int64
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				wr := deployWrite{tag: fmt.Sprintf("c-%d-%d", i, n), content: fmt.Sprintf("%s w%d n%d", marker, i, n), at: time.Now()}
				body, _ := json.Marshal(map[string]string{"content": wr.content})
				req, _ := http.NewRequest("POST", nx.URL+"/api/v1/facts", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+w.bob)
				req.Header.Set("X-Deploy-Tag", wr.tag)
				resp, err := client.Do(req)
				if err != nil {
					wr.err = err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					wr.status = resp.StatusCode
					var f idflow.Fact
					if resp.StatusCode == http.StatusCreated && json.Unmarshal(b, &f) == nil && f.ID != "" && f.Content == wr.content && f.UserID == "bob" {
						wr.id = f.ID
						acks.Add(1)
					} else {
						wr.err = strings.TrimSpace(string(b))
					}
				}
				mu.Lock()
				writes = append(writes, wr)
				mu.Unlock()
			}
		}(i)
	}
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWriters()

	isWrite := func(l deployLogLine) bool { return strings.HasPrefix(l.Tag, "c-") }
	// Before the kill: replica A has acknowledged writes.
	runsPoll(t, 60*time.Second, "writes acknowledged by both replicas", func() (bool, string) {
		per := map[string]int{}
		for _, l := range nx.lines(t) {
			if isWrite(l) && l.Status == "201" {
				per[l.Upstream]++
			}
		}
		return per[w.hostA()] >= 100 && per[w.hostB()] >= 100, fmt.Sprint(per)
	})
	acksAtKill := acks.Load()
	w.a.kill(t) // SIGKILL, and wait until the process is gone
	killed := time.Now()

	// After the kill: writes go on. At least one was refused by the dead
	// replica's port and passed to B by nginx (proxy_next_upstream error),
	// and B acknowledged many more.
	runsPoll(t, 60*time.Second, "writes after the kill, one of them passed on from the dead replica", func() (bool, string) {
		passedOn := 0
		for _, l := range nx.lines(t) {
			if isWrite(l) && l.Status == "201" && l.Upstream == w.hostA()+", "+w.hostB() {
				passedOn++
			}
		}
		after := acks.Load() - acksAtKill
		return passedOn >= 1 && after >= 300, fmt.Sprintf("passed on %d, acknowledged since the kill %d", passedOn, after)
	})
	stopWriters()

	// Every acknowledged write, read back through replica B: present, with
	// its content, exactly once; no write at all is stored twice.
	stored := map[string][]idflow.Fact{} // content → facts
	cursor := ""
	for page := 0; ; page++ {
		path := "/api/v1/facts?limit=200"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		pg := runsJSON[struct {
			Items      []idflow.Fact `json:"items"`
			NextCursor string        `json:"next_cursor"`
		}](t, w.b.URL, "GET", path, w.bob, nil, http.StatusOK)
		for _, f := range pg.Items {
			if strings.HasPrefix(f.Content, marker+" ") {
				stored[f.Content] = append(stored[f.Content], f)
			}
		}
		if pg.NextCursor == "" {
			break
		}
		if page > 1000 {
			t.Fatal("more than 1000 pages of facts")
		}
		cursor = pg.NextCursor
	}
	upstreamOf := map[string]string{}
	passedOn := 0
	for _, l := range nx.synced(t) {
		if isWrite(l) {
			upstreamOf[l.Tag] = l.Upstream
			if l.Upstream == w.hostA()+", "+w.hostB() && l.Status == "201" {
				passedOn++
			}
		}
	}
	var acked, lost, duplicated, failed, failedButStored, ackedByA, beforeKill int
	failures := map[string]int{}
	for _, wr := range writes {
		if _, ok := upstreamOf[wr.tag]; !ok && wr.status != 0 {
			t.Errorf("write %s was answered %d, but nginx did not log it", wr.tag, wr.status)
		}
		got := stored[wr.content]
		if len(got) > 1 {
			duplicated++
			t.Errorf("write %s is stored %d times: %+v", wr.tag, len(got), got)
		}
		if wr.id == "" {
			failed++
			reason, _, _ := strings.Cut(wr.err, "\n")
			failures[fmt.Sprintf("status %d %s", wr.status, reason)]++
			if len(got) == 1 {
				failedButStored++
			}
			if wr.at.After(killed) && upstreamOf[wr.tag] != w.hostA() {
				t.Errorf("write %s failed after the kill, not on the dead replica (upstream %q): %d %s", wr.tag, upstreamOf[wr.tag], wr.status, wr.err)
			}
			continue
		}
		acked++
		if upstreamOf[wr.tag] == w.hostA() {
			ackedByA++
		}
		if wr.at.Before(killed) {
			beforeKill++
		}
		if len(got) == 0 || got[0].ID != wr.id {
			lost++
			t.Errorf("acknowledged write %s (%s) is not stored as %s: %+v", wr.tag, wr.content, wr.id, got)
		}
	}
	if failed > writers {
		t.Errorf("%d writes failed; at most one per writer (%d) can have been in flight on the killed replica: %v", failed, writers, failures)
	}
	if ackedByA < 100 {
		t.Errorf("only %d acknowledged writes were served by replica A", ackedByA)
	}
	// kill -9 in the middle of writes left the audit hash chain whole.
	db, err := postgres.Open(context.Background(), w.db.AppURL, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	verifier := authtest.User("deploy-verifier", "", "platform-admin")
	scope, err := idflow.NewAdminScope(verifier, idflow.AdminRoles{Platform: "platform-admin"})
	if err != nil {
		t.Fatal(err)
	}
	events, err := db.VerifyAuditChain(context.Background(), verifier, scope)
	if err != nil {
		t.Errorf("audit chain after kill -9: %v", err)
	}
	t.Logf("kill -9 of replica A under %d writers through nginx: %d writes, %d acknowledged (%d by A, %d before the kill), lost %d, duplicated %d; "+
		"failed %d (%d of them stored anyway) %v; %d refused by the dead replica's port and passed to B; audit chain of %d events verifies",
		writers, len(writes), acked, ackedByA, beforeKill, lost, duplicated, failed, failedButStored, failures, passedOn, events)
}

// ---- nginx ----

// deployNginx is a real nginx running a configuration from deploy/nginx.
type deployNginx struct {
	URL     string
	dir     string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	output  *syncBuffer
	syncs   atomic.Int64
}

// Host is nginx's host:port.
func (n *deployNginx) Host() string { return strings.TrimPrefix(n.URL, "http://") }

// deployPlaceholder is a ${NAME} placeholder of a deploy/nginx file.
var deployPlaceholder = regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)\}`)

// deployRender fills in the placeholders of deploy/nginx/<name> the way
// `envsubst '${NAME} …'` does: only the names given, each of which must
// occur; no IDFLOW_ placeholder may remain outside comments.
func deployRender(t *testing.T, name string, vars map[string]string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nginx", name))
	if err != nil {
		t.Fatalf("the deployment kit's nginx configuration: %v", err)
	}
	used := map[string]bool{}
	out := deployPlaceholder.ReplaceAllStringFunc(string(raw), func(m string) string {
		k := m[2 : len(m)-1]
		if v, ok := vars[k]; ok {
			used[k] = true
			return v
		}
		return m
	})
	for k := range vars {
		if !used[k] {
			t.Fatalf("%s has no placeholder ${%s}", name, k)
		}
	}
	for i, line := range strings.Split(out, "\n") {
		if code, _, _ := strings.Cut(line, "#"); strings.Contains(code, "${IDFLOW_") {
			t.Fatalf("%s:%d: a placeholder the test does not fill: %s", name, i+1, line)
		}
	}
	return out
}

// startDeployNginx renders deploy/nginx/<name> (IDFLOW_NGINX_LISTEN set to
// 127.0.0.1:port) into a temporary prefix, includes it in the http block of
// a minimal main configuration — as /etc/nginx/nginx.conf includes
// conf.d/*.conf — and runs nginx in the foreground until the test ends.
// The access log records, per request, its X-Deploy-Tag and the replica(s)
// nginx sent it to.
func startDeployNginx(t *testing.T, bin, name string, port int, vars map[string]string) *deployNginx {
	t.Helper()
	vars["IDFLOW_NGINX_LISTEN"] = "127.0.0.1:" + strconv.Itoa(port)
	dir := t.TempDir()
	site := deployRender(t, name, vars)
	if err := os.WriteFile(filepath.Join(dir, "site.conf"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		// As root (CI), workers would switch to nobody, who cannot enter the
		// test's private temporary directories.
		user = "user root root;"
	}
	main := fmt.Sprintf(`%s
worker_processes 1;
events { worker_connections 1024; }
http {
    log_format deploy_test '$request_method|$uri|$status|$upstream_addr|$upstream_status|$http_x_deploy_tag|$http_mcp_session_id';
    access_log %[2]s/access.log deploy_test;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[2]s/site.conf;
}
`, user, dir)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off; pid " + filepath.Join(dir, "nginx.pid") + ";"}
	if out, err := exec.Command(bin, append([]string{"-t", "-q"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t with deploy/nginx/%s: %v\n%s", name, err, out)
	}
	n := &deployNginx{URL: "http://127.0.0.1:" + strconv.Itoa(port), dir: dir, exited: make(chan struct{}), output: &syncBuffer{}}
	n.cmd = exec.Command(bin, args...)
	n.cmd.Stdout, n.cmd.Stderr = n.output, n.output
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	go func() { n.waitErr = n.cmd.Wait(); close(n.exited) }()
	t.Cleanup(func() {
		pgid := n.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM) // fast shutdown: open WebSockets do not hold it up
		select {
		case <-n.exited:
		case <-time.After(10 * time.Second):
			t.Logf("nginx did not stop within 10s of SIGTERM; killing it")
		}
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Logf("kill nginx: %v", err)
		}
		<-n.exited
		if t.Failed() {
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx (%s) output:\n%s\nerror.log:\n%s", name, n.output.String(), lastLinesOf(string(errLog), 40))
		}
	})
	runsPoll(t, 30*time.Second, "nginx accepts connections", func() (bool, string) {
		select {
		case <-n.exited:
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %v\n%s\n%s", n.waitErr, n.output.String(), errLog)
		default:
		}
		c, err := net.DialTimeout("tcp", n.Host(), time.Second)
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	})
	return n
}

func lastLinesOf(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// deployLogLine is one line of the test's nginx access log.
type deployLogLine struct {
	Method, URI, Status, Upstream, UpstreamStatus, Tag, MCPSession string
}

// lines parses the access log as written so far (nginx writes each line
// when its request ends).
func (n *deployNginx) lines(t testing.TB) []deployLogLine {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "access.log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []deployLogLine
	for _, s := range strings.Split(string(b), "\n") {
		f := strings.Split(s, "|")
		if len(f) != 7 {
			continue // the last, unfinished line
		}
		out = append(out, deployLogLine{Method: f[0], URI: f[1], Status: f[2], Upstream: f[3], UpstreamStatus: f[4], Tag: f[5], MCPSession: f[6]})
	}
	return out
}

// synced returns the access log once it holds every request whose answer
// the test has received: nginx writes a request's line just after its
// answer, so the test sends one more request and waits for its line (one
// worker process handles requests, and logs them, in order).
func (n *deployNginx) synced(t *testing.T) []deployLogLine {
	t.Helper()
	tag := fmt.Sprintf("sync-%d", n.syncs.Add(1))
	deployDo(t, "", "GET", n.URL+"/healthz", "", http.Header{"X-Deploy-Tag": {tag}}, "")
	var lines []deployLogLine
	runsPoll(t, 10*time.Second, "nginx logs "+tag, func() (bool, string) {
		lines = n.lines(t)
		return slices.ContainsFunc(lines, func(l deployLogLine) bool { return l.Tag == tag }), ""
	})
	return lines
}

// line returns the one line tagged tag.
func (n *deployNginx) line(t *testing.T, tag string) deployLogLine {
	t.Helper()
	var found []deployLogLine
	for _, l := range n.synced(t) {
		if l.Tag == tag {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("nginx logged %d requests tagged %s: %+v", len(found), tag, found)
	}
	return found[0]
}
