package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/devidp"
)

// exposition is one scrape of /metrics: its text and its families.
type exposition struct {
	text string
	fams map[string]*dto.MetricFamily
}

// parseExposition parses Prometheus text, failing the test if it is not.
func parseExposition(t testing.TB, text string) exposition {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v\n%s", err, text)
	}
	return exposition{text: text, fams: fams}
}

// scrape GETs /metrics on s as the allowlisted app client and requires 200.
func (s *prodServer) scrape(t testing.TB) exposition {
	t.Helper()
	r := s.As(t, callerApp, "GET", "/metrics", nil)
	mustStatus(t, r, http.StatusOK)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type %q; want Prometheus text", ct)
	}
	return parseExposition(t, string(r.Body))
}

// value sums the samples of family name whose labels include want.
// Counters, gauges and histograms (their sample count) are read.
func (e exposition) value(name string, want map[string]string) float64 {
	f, ok := e.fams[name]
	if !ok {
		return -1
	}
	sum := 0.0
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// series counts the series of family name.
func (e exposition) series(name string) int {
	return len(e.fams[name].GetMetric())
}

// waitMetric scrapes until value(name, labels) satisfies ok, or fails.
func (s *prodServer) waitMetric(t testing.TB, name string, labels map[string]string, what string, ok func(float64) bool) exposition {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for pause := 5 * time.Millisecond; ; pause = min(2*pause, 200*time.Millisecond) {
		e := s.scrape(t)
		v := e.value(name, labels)
		if ok(v) {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v after 30s; want %s", name, labels, v, what)
		}
		time.Sleep(pause) // polling with a deadline, not timing
	}
}

func atLeast(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }

// TestMetricsEndpoint: /metrics answers Prometheus text to the allowlisted
// app-only client only, with every family of docs/METRICS.md, counting
// requests by route pattern, auth method and refusal reason.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, nil)

	// Who may scrape: the allowlisted app client, nobody else.
	checkProblem(t, s.As(t, callerNone, "GET", "/metrics", nil), http.StatusUnauthorized)
	checkProblem(t, s.As(t, callerAlice, "GET", "/metrics", nil), http.StatusForbidden)
	checkProblem(t, s.As(t, callerAdmin, "GET", "/metrics", nil), http.StatusForbidden)
	checkProblem(t, s.Do(t, "GET", "/metrics", "junk."+s.Token(t, callerApp)[5:], nil), http.StatusUnauthorized)
	other := s.Issuer.Sign(s.Issuer.EntraV2App(authtest.EntraApp{TenantID: "t-one", ClientID: "some-other-client", Issuer: s.Issuer.Issuer(), IDTyp: true}))
	checkProblem(t, s.Do(t, "GET", "/metrics", other, nil), http.StatusForbidden)
	checkProblem(t, s.As(t, callerExpired, "GET", "/api/v1/me", nil), http.StatusUnauthorized)
	checkProblem(t, s.As(t, callerNone, "GET", "/api/v1/me", nil, header{"X-Authenticated-User", "mallory"}), http.StatusUnauthorized)

	// Some traffic: a read, a write, a run to its end, a run left waiting
	// with a WebSocket on it, an MCP session.
	for range 3 {
		mustStatus(t, s.As(t, callerAlice, "GET", "/api/v1/me", nil), http.StatusOK)
	}
	s.create(t, callerAlice, "/api/v1/apps", map[string]any{"name": "metrics app"})
	quick := s.create(t, callerAlice, "/api/v1/workflows", quickWorkflow("metrics quick"))
	run := s.create(t, callerAlice, "/api/v1/workflows/"+quick+"/runs", map[string]any{})
	if st := s.waitRun(t, callerAlice, run); st != idflow.RunSucceeded {
		t.Fatalf("quick run ended %q", st)
	}
	long := s.create(t, callerAlice, "/api/v1/workflows", map[string]any{"name": "metrics long", "definition": map[string]any{
		"steps": []any{map[string]any{"id": "wait", "type": "wait", "ms": 60000}}}})
	longRun := s.create(t, callerAlice, "/api/v1/workflows/"+long+"/runs", map[string]any{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ws, resp, err := wsDial(ctx, s.URL, longRun, s.Token(t, callerAlice))
	if err != nil {
		t.Fatalf("run socket: %v (%s)", err, runsRespStatus(resp))
	}
	defer ws.CloseNow()
	mcpConnect(t, s.URL, s.Token(t, callerAlice))

	e := s.waitMetric(t, "idflow_runs_executing", nil, "1 (the waiting run)", atLeast(1))
	for _, fam := range []string{
		"idflow_http_requests_total", "idflow_http_request_duration_seconds",
		"idflow_jwks_fetches_total", "idflow_token_cache_lookups_total",
		"idflow_runs_transitions_total", "idflow_runs_executing",
		"idflow_websockets_open", "idflow_mcp_sessions_open", "idflow_audit_denials_dropped_total",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if _, ok := e.fams[fam]; !ok {
			t.Errorf("/metrics has no family %s", fam)
		}
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"idflow_http_requests_total", map[string]string{"route": "/api/v1/me", "method": "GET", "status": "2xx", "auth": "bearer", "refusal": "none"}, 3},
		{"idflow_http_request_duration_seconds", map[string]string{"route": "/api/v1/me", "method": "GET", "status": "2xx"}, 3},
		{"idflow_http_requests_total", map[string]string{"route": "/api/v1/apps", "method": "POST", "status": "2xx"}, 1},
		{"idflow_http_requests_total", map[string]string{"route": "/metrics", "status": "4xx", "auth": "none", "refusal": "no_credentials"}, 1},
		{"idflow_http_requests_total", map[string]string{"route": "/metrics", "status": "4xx", "auth": "bearer", "refusal": "forbidden"}, 3},
		{"idflow_http_requests_total", map[string]string{"route": "/metrics", "status": "4xx", "auth": "bearer", "refusal": "invalid_token"}, 1},
		{"idflow_http_requests_total", map[string]string{"route": "/api/v1/me", "status": "4xx", "auth": "bearer", "refusal": "expired"}, 1},
		{"idflow_http_requests_total", map[string]string{"route": "/api/v1/me", "status": "4xx", "auth": "proxy_header", "refusal": "spoofed_header"}, 1},
		{"idflow_http_requests_total", map[string]string{"route": "/ws/execution/{run_id}", "status": "1xx", "auth": "bearer"}, 1},
		{"idflow_http_requests_total", map[string]string{"route": "/mcp", "method": "POST", "auth": "bearer", "refusal": "none"}, 1},
		{"idflow_jwks_fetches_total", map[string]string{"source": "oidc", "outcome": "ok"}, 1},
		{"idflow_token_cache_lookups_total", map[string]string{"result": "hit"}, 1},
		{"idflow_token_cache_lookups_total", map[string]string{"result": "miss"}, 1},
		{"idflow_runs_transitions_total", map[string]string{"state": "queued"}, 2},
		{"idflow_runs_transitions_total", map[string]string{"state": "running"}, 2},
		{"idflow_runs_transitions_total", map[string]string{"state": "succeeded"}, 1},
		{"idflow_websockets_open", nil, 1},
		{"idflow_mcp_sessions_open", nil, 1},
	} {
		// A streamed answer (an upgrade, an MCP event stream) reaches the
		// client before its handler returns and is counted: wait for it.
		s.waitMetric(t, c.name, c.labels, fmt.Sprintf("at least %v", c.min), atLeast(c.min))
	}

	// Cancelling the waiting run ends it, its socket and the gauge.
	mustStatus(t, s.As(t, callerAlice, "POST", "/api/v1/runs/"+longRun+"/cancel", nil), http.StatusOK)
	if _, status, err := wsRead(ctx, ws); err != nil || status != websocket.StatusNormalClosure {
		t.Fatalf("run socket after cancel: status %d, %v", status, err)
	}
	s.waitMetric(t, "idflow_websockets_open", nil, "0 after the socket closed", func(v float64) bool { return v == 0 })
	s.waitMetric(t, "idflow_runs_executing", nil, "0 after the cancel", func(v float64) bool { return v == 0 })
	s.waitMetric(t, "idflow_runs_transitions_total", map[string]string{"state": "cancelled"}, "1", atLeast(1))
}

// TestMetricsListen: IDFLOW_METRICS_LISTEN serves /metrics without a token
// on its own listener, and nothing else there; the API's /metrics still
// needs the allowlisted app token.
func TestMetricsListen(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	s := startProdIdflow(t, map[string]string{"IDFLOW_METRICS_LISTEN": addr})
	mustStatus(t, s.As(t, callerAlice, "GET", "/api/v1/me", nil), http.StatusOK)

	get := func(method, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s on the metrics listener: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	status, text := get("GET", "/metrics")
	if status != http.StatusOK {
		t.Fatalf("metrics listener: GET /metrics without a token: %d; want 200", status)
	}
	e := parseExposition(t, text)
	if v := e.value("idflow_http_requests_total", map[string]string{"route": "/api/v1/me", "auth": "bearer", "status": "2xx"}); v < 1 {
		t.Fatalf("the metrics listener's exposition misses the API's requests: %v", v)
	}
	for _, p := range []string{"/api/v1/me", "/healthz", "/internal/v1/stats", "/"} {
		if status, _ := get("GET", p); status != http.StatusNotFound {
			t.Errorf("metrics listener: GET %s = %d; want 404 (it serves /metrics only)", p, status)
		}
	}
	if status, _ := get("POST", "/metrics"); status != http.StatusMethodNotAllowed {
		t.Errorf("metrics listener: POST /metrics = %d; want 405", status)
	}

	// The API listener is unchanged: the token is still required.
	checkProblem(t, s.As(t, callerNone, "GET", "/metrics", nil), http.StatusUnauthorized)
	checkProblem(t, s.As(t, callerAlice, "GET", "/metrics", nil), http.StatusForbidden)
	s.scrape(t)

	// --dev listens on loopback only, metrics included.
	_, _, err := runCmd(t, map[string]string{"IDFLOW_DATA_DIR": t.TempDir(), "IDFLOW_METRICS_LISTEN": "0.0.0.0:0"}, "serve", "--dev")
	if err == nil || !strings.Contains(err.Error(), "IDFLOW_METRICS_LISTEN") {
		t.Fatalf("--dev with a non-loopback metrics address: %v; want a refusal naming IDFLOW_METRICS_LISTEN", err)
	}
}

// TestMetricsCarryNoIdentity: after requests by users with distinctive
// ids, emails and names, with junk and expired tokens, and on paths with
// object ids and unknown paths, the exposition contains none of them.
func TestMetricsCarryNoIdentity(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, nil)
	var secrets []string
	for _, who := range []string{callerAlice, callerBob, callerCarol, callerAdmin} {
		u := testUsers[who]
		c := s.userClaims(t, who)
		secrets = append(secrets, u.oid, u.name, c["preferred_username"].(string))
		tok := s.Token(t, who)
		for _, part := range strings.Split(tok, ".")[1:] { // the header is the same for every token
			secrets = append(secrets, part[:24], part[len(part)-24:])
		}
		mustStatus(t, s.As(t, who, "GET", "/api/v1/me", nil), http.StatusOK)
		app := s.create(t, who, "/api/v1/apps", map[string]any{"name": "app of " + who})
		mustStatus(t, s.As(t, who, "GET", "/api/v1/apps/"+app, nil), http.StatusOK)
		fact := s.create(t, who, "/api/v1/facts", map[string]any{"content": "a fact of " + who})
		mustStatus(t, s.As(t, who, "GET", "/api/v1/users/"+u.oid+"/facts", nil), http.StatusOK)
		mustStatus(t, s.As(t, who, "GET", "/api/v1/users/me/facts", nil), http.StatusOK)
		secrets = append(secrets, app, fact, "/api/v1/apps/"+app, "/api/v1/users/"+u.oid)
	}
	// Another user's object, refused with 404, by its id.
	bobApp := s.create(t, callerBob, "/api/v1/apps", map[string]any{"name": "bob's"})
	mustStatus(t, s.As(t, callerAlice, "GET", "/api/v1/apps/"+bobApp, nil), http.StatusNotFound)
	secrets = append(secrets, bobApp)

	junk := "junk-token-" + randomHex(t, 12)
	checkProblem(t, s.Do(t, "GET", "/api/v1/me", junk, nil), http.StatusUnauthorized)
	forged := s.Token(t, callerAlice)
	forged = forged[:len(forged)-8] + "AAAAAAAA"
	checkProblem(t, s.Do(t, "GET", "/api/v1/me", forged, nil), http.StatusUnauthorized)
	checkProblem(t, s.As(t, callerExpired, "GET", "/api/v1/me", nil), http.StatusUnauthorized)
	spoofed := "spoofed-user-" + randomHex(t, 6)
	checkProblem(t, s.As(t, callerNone, "GET", "/api/v1/me", nil, header{"X-Authenticated-User", spoofed}), http.StatusUnauthorized)
	unknown := "/api/v1/no-such-" + randomHex(t, 8) + "/alice@t-one.example"
	mustStatus(t, s.As(t, callerAlice, "GET", unknown, nil), http.StatusNotFound)
	withQuery := "/api/v1/me?access_token=" + junk + "&user=" + testUsers[callerCarol].oid
	mustStatus(t, s.As(t, callerAlice, "GET", withQuery, nil), http.StatusOK)
	secrets = append(secrets, junk, spoofed, unknown, "no-such-", testAppClientID, "t-one", "t-two", "@")

	e := s.scrape(t)
	for _, secret := range secrets {
		if strings.Contains(e.text, secret) {
			t.Errorf("/metrics contains %q", secret)
		}
	}
	// And the requests were counted, by pattern.
	if v := e.value("idflow_http_requests_total", map[string]string{"route": "/api/v1/apps/{app_id}", "status": "2xx"}); v < 4 {
		t.Errorf("GET /api/v1/apps/{app_id} counted %v times; want 4", v)
	}
	if v := e.value("idflow_http_requests_total", map[string]string{"route": "/api/v1/users/{user_id}/facts"}); v < 8 {
		t.Errorf("GET /api/v1/users/{user_id}/facts counted %v times; want 8", v)
	}
	if v := e.value("idflow_http_requests_total", map[string]string{"route": "unmatched", "status": "4xx"}); v < 1 {
		t.Errorf("the unknown path was not counted as unmatched: %v", v)
	}
}

// TestMetricsCardinalityBounded: 1,000 distinct unknown paths, unknown
// methods and object ids add a handful of series, not a thousand.
func TestMetricsCardinalityBounded(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, nil)
	mustStatus(t, s.As(t, callerAlice, "GET", "/api/v1/me", nil), http.StatusOK)
	before := s.scrape(t)
	marker := randomHex(t, 8)
	for i := range 1000 {
		path := fmt.Sprintf("/x-%s-%d/%s", marker, i, randomHex(t, 4))
		switch i % 4 {
		case 1:
			path = fmt.Sprintf("/api/v1/apps/app_%s%d", marker, i) // a known pattern, a made-up id
		case 2:
			path = fmt.Sprintf("/api/v1/apps/app_%s%d/nope", marker, i)
		}
		method := "GET"
		if i%5 == 0 {
			method = fmt.Sprintf("M%s%d", marker, i)
		}
		who := callerAlice
		if i%3 == 0 {
			who = callerNone
		}
		r := s.As(t, who, method, path, nil)
		if r.Status < 400 {
			t.Fatalf("%s; want a refusal", r)
		}
	}
	after := s.scrape(t)
	for _, fam := range []string{"idflow_http_requests_total", "idflow_http_request_duration_seconds"} {
		if grew := after.series(fam) - before.series(fam); grew > 12 {
			t.Errorf("%s grew by %d series over 1,000 distinct paths; want a handful", fam, grew)
		}
	}
	if strings.Contains(after.text, marker) {
		t.Error("/metrics contains a requested path or method")
	}
	if v := after.value("idflow_http_requests_total", map[string]string{"route": "unmatched"}); v < 500 {
		t.Errorf("unmatched requests counted %v; want at least 500", v)
	}
	if v := after.value("idflow_http_requests_total", map[string]string{"method": "other"}); v < 200 {
		t.Errorf("requests with unknown methods counted %v under method=\"other\"; want at least 200", v)
	}
}

// TestMetricsDevScrapeConfig follows docs/METRICS.md's dev example the way
// Prometheus' oauth2 block does: client credentials of the dev issuer's
// app client at /dev/idp/token, then GET /metrics with that token.
func TestMetricsDevScrapeConfig(t *testing.T) {
	t.Parallel()
	srv := startIdflow(t, nil, "--dev")
	cc := clientcredentials.Config{ClientID: devidp.AppClientID, ClientSecret: devAppSecret, TokenURL: srv.URL + "/dev/idp/token"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cc.Client(ctx).Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("dev scrape with client credentials: %d %s", resp.StatusCode, b)
	}
	e := parseExposition(t, string(b))
	if v := e.value("idflow_http_requests_total", map[string]string{"route": "/dev/idp/", "method": "POST", "status": "2xx"}); v < 1 {
		t.Errorf("the token request was not counted under route /dev/idp/: %v", v)
	}
	if _, ok := e.fams["idflow_token_cache_lookups_total"]; !ok {
		t.Error("dev /metrics has no idflow_token_cache_lookups_total")
	}
	// A user of the dev issuer may not scrape.
	out, errOut, err := runCmd(t, map[string]string{}, "dev-token", "alice", "--server", srv.URL)
	if err != nil {
		t.Fatalf("dev-token: %v %s", err, errOut)
	}
	if resp, _ := srv.get(t, "/metrics", strings.TrimSpace(out)); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("alice's dev token on /metrics: %d; want 403", resp.StatusCode)
	}
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
