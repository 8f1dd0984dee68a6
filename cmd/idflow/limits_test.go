package main

import (
	"strings"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/internal/testsvc"
)

// startReplicas starts n idflow replicas in production mode that trust one
// issuer and share env (a Redis, a database), as a deployment's replicas do.
func startReplicas(t *testing.T, n int, env map[string]string) []*prodServer {
	t.Helper()
	iss := authtest.NewIssuer(t)
	var out []*prodServer
	for range n {
		e := map[string]string{
			"IDFLOW_OIDC_ISSUER": iss.Issuer(), "IDFLOW_OIDC_AUDIENCE": iss.Audience(),
			"IDFLOW_INTERNAL_CLIENTS": testAppClientID, "IDFLOW_LOG_LEVEL": "error", "IDFLOW_OIDC_USER_CLAIM": "oid",
			"IDFLOW_PLATFORM_ADMIN_ROLE": testPlatformRole,
		}
		for k, v := range env {
			e[k] = v
		}
		out = append(out, &prodServer{runningServer: startIdflow(t, e), Issuer: iss, tokens: map[string]string{}})
	}
	return out
}

// TestRateLimitsAcrossReplicasOnRedis: two replicas on one Redis count
// alice's reads against one bucket (IDFLOW_RATE_LIMITS): her burst is spent
// whichever replica answers, then both refuse her with 429, Retry-After
// and the RateLimit headers, while bob, on either, is unaffected. The
// refusals are counted in /metrics by class and reason, never by user.
func TestRateLimitsAcrossReplicasOnRedis(t *testing.T) {
	env := map[string]string{
		"IDFLOW_CACHE_URL":   "redis://" + testsvc.StartRedis(t) + "/0",
		"IDFLOW_RATE_LIMITS": "read=1/m:burst=4",
	}
	rs := startReplicas(t, 2, env)
	for i := range 4 {
		if r := rs[i%2].As(t, callerAlice, "GET", "/api/v1/me", nil); r.Status != 200 {
			t.Fatalf("alice's read %d on replica %d: %s", i+1, i%2, r)
		}
	}
	for i, rep := range rs {
		r := rep.As(t, callerAlice, "GET", "/api/v1/me", nil)
		if r.Status != 429 || r.Header.Get("Retry-After") == "" || r.Header.Get("RateLimit-Policy") != `"read";q=4;w=240` ||
			!strings.HasPrefix(r.Header.Get("RateLimit"), `"read";r=0;t=`) || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("alice's fifth read on replica %d: %s %v", i, r, r.Header)
		}
		if r := rep.As(t, callerBob, "GET", "/api/v1/me", nil); r.Status != 200 {
			t.Fatalf("bob on replica %d: %s", i, r)
		}
	}
	m := rs[0].As(t, callerApp, "GET", "/metrics", nil)
	if m.Status != 200 || !strings.Contains(string(m.Body), `idflow_limits_hit_total{class="read",reason="rate"} 1`) {
		t.Fatalf("metrics: %d %.2000s", m.Status, grepLines(string(m.Body), "limits_hit"))
	}
	if strings.Contains(string(m.Body), rs[0].UserID(t, callerAlice)) {
		t.Fatal("/metrics carries alice's user id")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRateLimitsConfig: IDFLOW_RATE_LIMITS and the concurrency limits are
// read from the environment or their flags, and a bad value stops serve
// with the variable named.
func TestRateLimitsConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, _, err := loadConfig("serve", []string{"--rate-limits", "turn=5/m"}, env(map[string]string{"IDFLOW_RATE_LIMITS": "read=1/s"}), &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.rateLimits.String(); !strings.Contains(got, "turn=5/m") || strings.Contains(got, "read=1/s") {
		t.Fatalf("the flag did not win: %s", got)
	}
	for k, v := range map[string]string{
		"IDFLOW_RATE_LIMITS": "read=fast", "IDFLOW_TURNS_PER_USER": "0", "IDFLOW_STREAMS_PER_USER": "x",
		"IDFLOW_INGEST_BYTES_PER_USER": "-1",
	} {
		_, _, err := loadConfig("serve", nil, env(map[string]string{k: v}), &strings.Builder{})
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
}

type budgetUsage struct {
	Items  []idflow.UsageDay `json:"items"`
	Budget *struct {
		UserDay struct {
			Used      int64  `json:"used"`
			Limit     int64  `json:"limit"`
			Remaining *int64 `json:"remaining"`
		} `json:"user_day"`
	} `json:"budget"`
}

func (s *prodServer) budgetUsage(t *testing.T, who string) budgetUsage {
	t.Helper()
	r := s.As(t, who, "GET", "/api/v1/usage", nil)
	mustStatus(t, r, 200)
	var u budgetUsage
	r.JSON(t, &u)
	if u.Budget == nil {
		t.Fatalf("%s: no budget in the usage answer", r)
	}
	return u
}

func calls(items []idflow.UsageDay) (n int64) {
	for _, it := range items {
		n += it.Calls
	}
	return n
}

// TestModelBudgetEndToEnd: with IDFLOW_MODEL_BUDGET, alice's turn that
// would pass her daily budget is refused 429 with a clear message before
// any model call, streamed or not (no call counted, nothing stored); the
// refusal is audited and counted by reason; bob is unaffected; GET
// /api/v1/usage shows each their budget and what remains; the admin of
// another tenant cannot reset her, her own tenant's admin sees her spend
// and resets it, audited, and she can talk again.
func TestModelBudgetEndToEnd(t *testing.T) {
	s := startProdIdflow(t, map[string]string{"IDFLOW_MODEL_BUDGET": "user.day=12000"})
	// ~5000 estimated tokens a turn, and the echo model reports ~8000 used
	// for it (its prompt and its answer, a word a token): one turn fits
	// the budget, two do not.
	big := strings.Repeat("word ", 4000)
	ses := s.create(t, callerAlice, "/api/v1/sessions", map[string]any{"title": "budget"})
	s.say(t, callerAlice, ses, big)
	before := s.budgetUsage(t, callerAlice)
	if before.Budget.UserDay.Limit != 12000 || before.Budget.UserDay.Used < 7000 || *before.Budget.UserDay.Remaining != 12000-before.Budget.UserDay.Used {
		t.Fatalf("after one turn: %+v", before.Budget)
	}
	r := s.As(t, callerAlice, "POST", "/api/v1/sessions/"+ses+"/messages", map[string]any{"content": big}, header{"X-Request-Id", "budget-refused-1"})
	if r.Status != 429 || !strings.Contains(string(r.Body), "your daily model token budget of 12000 tokens is spent") {
		t.Fatalf("alice past her budget: %s", r)
	}
	stream := s.As(t, callerAlice, "POST", "/api/v1/sessions/"+ses+"/messages", map[string]any{"content": big}, header{"Accept", "text/event-stream"})
	if stream.Status != 429 || stream.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("alice's streamed turn past her budget: %s", stream)
	}
	after := s.budgetUsage(t, callerAlice)
	if calls(after.Items) != calls(before.Items) || after.Budget.UserDay.Used != before.Budget.UserDay.Used {
		t.Fatalf("a refused turn reached the model: calls %d → %d, used %d → %d", calls(before.Items), calls(after.Items),
			before.Budget.UserDay.Used, after.Budget.UserDay.Used)
	}
	if n := len(s.listAll(t, callerAlice, "/api/v1/sessions/"+ses+"/messages")); n != 2 {
		t.Fatalf("%d messages stored; the refused turns stored some", n)
	}
	if ev := findAudit(s.auditEvents(t, callerAlice, "/api/v1/audit"), "budget-refused-1"); len(ev) != 1 ||
		ev[0].Action != "model.budget" || ev[0].Outcome != "denied" || ev[0].Resource != "budget/budget_user_day" {
		t.Fatalf("audit of the refusal: %+v", ev)
	}
	bobSes := s.create(t, callerBob, "/api/v1/sessions", map[string]any{"title": "bob"})
	s.say(t, callerBob, bobSes, "hello")
	if u := s.budgetUsage(t, callerBob); *u.Budget.UserDay.Remaining >= 12000 || *u.Budget.UserDay.Remaining < 11900 {
		t.Fatalf("bob's budget: %+v", u.Budget)
	}

	alice := s.UserID(t, callerAlice)
	// The admin of t-two names alice: their reset acts on t-two's users only.
	mustStatus(t, s.As(t, callerAdmin2, "POST", "/api/v1/admin/budgets/reset?user_id="+alice, nil), 200)
	if r := s.As(t, callerAlice, "POST", "/api/v1/sessions/"+ses+"/messages", map[string]any{"content": big}); r.Status != 429 {
		t.Fatalf("another tenant's admin reset alice: %s", r)
	}
	if r := s.As(t, callerAdmin2, "GET", "/api/v1/admin/budgets?tenant_id=t-one", nil); r.Status != 404 {
		t.Fatalf("t-two's admin reading t-one: %s", r)
	}
	if r := s.As(t, callerBob, "GET", "/api/v1/admin/budgets", nil); r.Status != 403 {
		t.Fatalf("bob on the admin route: %s", r)
	}
	var st struct {
		TenantID string `json:"tenant_id"`
		UserDay  struct {
			Used int64 `json:"used"`
		} `json:"user_day"`
	}
	r = s.As(t, callerAdmin, "GET", "/api/v1/admin/budgets?user_id="+alice, nil)
	mustStatus(t, r, 200)
	r.JSON(t, &st)
	if st.TenantID != "t-one" || st.UserDay.Used != before.Budget.UserDay.Used {
		t.Fatalf("the admin's view of alice: %s", r)
	}
	r = s.As(t, callerAdmin, "POST", "/api/v1/admin/budgets/reset?period=day&user_id="+alice, nil, header{"X-Request-Id", "budget-reset-1"})
	mustStatus(t, r, 200)
	if ev := findAudit(s.auditEvents(t, callerAdmin, "/api/v1/admin/audit"), "budget-reset-1"); len(ev) != 1 || ev[0].Action != "budget.reset" || ev[0].Outcome != "success" {
		t.Fatalf("audit of the reset: %+v", ev)
	}
	s.say(t, callerAlice, ses, big)
	m := s.As(t, callerApp, "GET", "/metrics", nil)
	if !strings.Contains(string(m.Body), `idflow_limits_hit_total{class="model",reason="budget_user_day"} 3`) {
		t.Fatalf("metrics: %s", grepLines(string(m.Body), "limits_hit"))
	}
}
