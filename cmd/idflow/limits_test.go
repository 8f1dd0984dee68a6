package main

import (
	"strings"
	"testing"

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
