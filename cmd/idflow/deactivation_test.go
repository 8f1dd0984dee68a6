package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/internal/testsvc"
)

// TestDeactivationAcrossReplicas: two replicas (separate processes) share
// PostgreSQL and Redis behind nginx. Alice holds every door open on
// replica B — her token in B's verified-token cache, a run's WebSocket, an
// MCP session — and her tenant's admin disables her on replica A. Within
// 5 s B refuses her REST calls, closes her socket with 4403, refuses her
// MCP session, and so does nginx whichever replica it picks; her queued
// run is cancelled. Re-enabled on A, she is let in again on B. (The cookie
// path goes through the same admit step: auth.TestAdmitRefusesDisabled.
// A personal access token of hers, made on B, and her browser session are
// refused on B too; re-enabled, she signs in again.)
func TestDeactivationAcrossReplicas(t *testing.T) {
	w := &deployWorld{nginxBin: testsvc.NginxPath(t)}
	pg := testsvc.StartPostgres(t)
	w.db = pg.NewDatabase(t)
	redisAddr := testsvc.StartRedis(t)
	// The issuer also signs users in through idflow's browser login, so
	// that alice holds a session cookie too; its tokens carry what
	// deployToken's do.
	w.iss = authtest.NewIssuer(t, authtest.WithSignIn(func(login string) authtest.Claims {
		return authtest.Claims{"tid": "t-one", "name": login, "email": login + "@example.test"}
	}))
	w.alice, w.bob = deployToken(w.iss, "alice"), deployToken(w.iss, "bob")
	w.admin = deployToken(w.iss, "deploy-admin", "admin")
	w.nginxPort = testsvc.FreePort(t)
	w.publicURL = "http://127.0.0.1:" + strconv.Itoa(w.nginxPort)
	vaultKey, assertionKey := deployKeys(t)
	w.base = map[string]string{
		"IDFLOW_OIDC_ISSUER":          w.iss.Issuer(),
		"IDFLOW_OIDC_AUDIENCE":        w.iss.Audience(),
		"IDFLOW_PUBLIC_URL":           w.publicURL,
		"IDFLOW_DATABASE_URL":         w.db.AppURL,
		"IDFLOW_MIGRATE_DATABASE_URL": w.db.OwnerURL,
		"IDFLOW_CACHE_URL":            "redis://" + redisAddr + "/0",
		"IDFLOW_VAULT_KEY":            vaultKey,
		"IDFLOW_ASSERTION_KEY":        assertionKey,
		"IDFLOW_LOG_LEVEL":            "warn",
		"IDFLOW_RUNS_PER_USER":        "1", // alice's second run waits: a queued run to cancel
		"IDFLOW_OIDC_CLIENT_ID":       "idflow-web",
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"migrate"}, func(k string) string { return w.base[k] }, &out, &errOut); err != nil {
		t.Fatalf("idflow migrate: %v\n%s", err, errOut.String())
	}
	w.a = w.startReplica(t, nil)
	w.b = w.startReplica(t, nil)
	nx := startDeployNginx(t, w.nginxBin, "idflow-replicas.conf", w.nginxPort, map[string]string{
		"IDFLOW_REPLICA_A": w.hostA(), "IDFLOW_REPLICA_B": w.hostB(),
	})
	const aliceID = "alice" // deployToken's sub

	status := func(base, token, method, path string) int {
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := harnessClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s%s: %d", method, base, path, resp.StatusCode)
		}
		return resp.StatusCode
	}
	// Every door open on B. Her token is verified (and cached) there.
	for _, base := range []string{w.a.URL, w.b.URL, nx.URL} {
		if st := status(base, w.alice, "GET", "/api/v1/me"); st != 200 {
			t.Fatalf("alice on %s before: %d", base, st)
		}
	}
	wf := deployWorkflow(t, w.b.URL, w.alice, 20, 1000)
	running := runsStart(t, w.b.URL, w.alice, wf.ID, 0, nil)
	queued := runsStart(t, w.b.URL, w.alice, wf.ID, 0, nil)
	runsWaitEvent(t, w.b.URL, w.alice, running.ID, 30*time.Second, "run.started",
		func(e idflow.Event) bool { return e.Type == idflow.EventRunStarted })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, _, err := deployDial(ctx, "ws://"+w.hostB(), running.ID, w.alice, "deactivation")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	closed := make(chan websocket.StatusCode, 1)
	go func() {
		for {
			if _, _, err := conn.Read(ctx); err != nil {
				closed <- websocket.CloseStatus(err)
				return
			}
		}
	}()
	sid := mcpRawSession(t, w.b.URL, w.alice)
	pat := runsJSON[struct {
		Token string `json:"token"`
	}](t, w.b.URL, "POST", "/api/v1/tokens", w.alice, map[string]any{"name": "deactivation", "scopes": []string{"read"}}, http.StatusCreated).Token
	if st := status(w.b.URL, pat, "GET", "/api/v1/apps"); st != 200 {
		t.Fatalf("alice's personal access token on B before: %d", st)
	}
	// Her browser signs in (the callback reaches either replica through
	// nginx); the session answers on B.
	cookie := runsBrowserSession(t, w.b.URL, "alice")
	cookieStatus := func() int {
		req, err := http.NewRequest("GET", w.b.URL+"/api/v1/me", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.AddCookie(cookie)
		resp, err := harnessClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := cookieStatus(); st != 200 {
		t.Fatalf("alice's browser session on B before: %d", st)
	}

	// Her admin disables her on A.
	disabledAt := time.Now()
	if st := status(w.a.URL, w.admin, "POST", "/api/v1/admin/users/"+aliceID+"/disable"); st != 200 {
		t.Fatalf("disable on A: %d", st)
	}
	if st := status(w.a.URL, w.alice, "GET", "/api/v1/me"); st != http.StatusForbidden {
		t.Fatalf("alice on A right after: %d; want 403", st)
	}
	within := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			if time.Since(disabledAt) > 5*time.Second {
				t.Fatalf("%s: not within 5 s of the disable on A", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("%s after %s", what, time.Since(disabledAt).Round(time.Millisecond))
	}
	within("REST refused on B", func() bool { return status(w.b.URL, w.alice, "GET", "/api/v1/apps") == http.StatusForbidden })
	within("REST refused through nginx", func() bool {
		for range 4 { // round robin: both replicas
			if status(nx.URL, w.alice, "GET", "/api/v1/me") != http.StatusForbidden {
				return false
			}
		}
		return true
	})
	within("WebSocket on B closed with 4403", func() bool {
		select {
		case code := <-closed:
			if code != 4403 {
				t.Fatalf("alice's socket on B closed with %d; want 4403", code)
			}
			return true
		default:
			return false
		}
	})
	within("personal access token refused on B", func() bool { return status(w.b.URL, pat, "GET", "/api/v1/apps") == http.StatusForbidden })
	within("browser session refused on B", func() bool {
		st := cookieStatus()
		return st == http.StatusForbidden || st == http.StatusUnauthorized
	})
	within("MCP session on B refused", func() bool {
		resp, _ := mcpHTTP(t, "POST", w.b.URL, w.alice, sid, mcpCallBody(t, "whoami", nil))
		return resp.StatusCode == http.StatusForbidden
	})
	if _, _, err := deployDial(ctx, "ws://"+w.hostB(), running.ID, w.alice, "deactivation-again"); err == nil {
		t.Fatal("a new socket of alice's on B was accepted")
	}
	if st := status(w.b.URL, w.bob, "GET", "/api/v1/me"); st != 200 {
		t.Fatalf("bob on B: %d; only alice is disabled", st)
	}
	// Re-enabled on A: B lets her in again.
	disabledAt = time.Now()
	if st := status(w.a.URL, w.admin, "POST", "/api/v1/admin/users/"+aliceID+"/enable"); st != 200 {
		t.Fatalf("enable on A: %d", st)
	}
	within("alice let in again on B", func() bool { return status(w.b.URL, w.alice, "GET", "/api/v1/me") == 200 })
	within("her personal access token works again on B", func() bool { return status(w.b.URL, pat, "GET", "/api/v1/apps") == 200 })
	// Her old session was ended; she signs in again.
	if st := cookieStatus(); st != http.StatusUnauthorized {
		t.Fatalf("alice's ended browser session after re-enabling: %d; want 401", st)
	}
	cookie = runsBrowserSession(t, w.b.URL, "alice")
	if st := cookieStatus(); st != 200 {
		t.Fatalf("alice signed in again on B: %d", st)
	}
	// Her runs were cancelled while she was disabled; re-enabling gives
	// back access, not what was ended.
	for _, r := range []idflow.Run{running, queued} {
		got := runsJSON[idflow.Run](t, w.b.URL, "GET", "/api/v1/runs/"+r.ID, w.alice, nil, http.StatusOK)
		if got.Status != idflow.RunCancelled {
			t.Fatalf("alice's run %s after her deactivation: %s; want cancelled", r.ID, got.Status)
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("the test ran out of time")
	}
}
