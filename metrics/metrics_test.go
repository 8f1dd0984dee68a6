package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/httpapi"
	"github.com/idflow/idflow/vault"
)

// value reads the counter, gauge or histogram count of family name whose
// labels are exactly want.
func value(t *testing.T, m *Metrics, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, s := range f.GetMetric() {
			if len(s.GetLabel()) != len(want) {
				continue
			}
			for _, lp := range s.GetLabel() {
				if want[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			switch {
			case s.Counter != nil:
				return s.GetCounter().GetValue()
			case s.Gauge != nil:
				return s.GetGauge().GetValue()
			case s.Histogram != nil:
				return float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

func TestOwnRegistry(t *testing.T) {
	m := New(nil)
	m.ObserveRequest(httpapi.RequestSample{Route: "/api/v1/me", Method: "GET", Status: "2xx", Auth: "bearer", Refusal: "none", Duration: time.Millisecond})
	fams, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "idflow_") {
			t.Fatalf("%s is on the global default registry", f.GetName())
		}
	}
	if New(nil).Registry() == m.Registry() {
		t.Fatal("two Metrics share a registry")
	}
}

func TestRequestSamples(t *testing.T) {
	m := New(nil)
	ok := httpapi.RequestSample{Route: "/api/v1/apps/{app_id}", Method: "GET", Status: "2xx", Auth: "bearer", Refusal: "none", Duration: 20 * time.Millisecond}
	refused := httpapi.RequestSample{Route: "/api/v1/apps/{app_id}", Method: "GET", Status: "4xx", Auth: "none", Refusal: "no_credentials", Duration: time.Millisecond}
	for range 3 {
		m.ObserveRequest(ok)
	}
	m.ObserveRequest(refused)
	labels := map[string]string{"route": ok.Route, "method": "GET", "status": "2xx", "auth": "bearer", "refusal": "none"}
	if v := value(t, m, "idflow_http_requests_total", labels); v != 3 {
		t.Fatalf("requests %v = %v; want 3", labels, v)
	}
	labels = map[string]string{"route": ok.Route, "method": "GET", "status": "4xx", "auth": "none", "refusal": "no_credentials"}
	if v := value(t, m, "idflow_http_requests_total", labels); v != 1 {
		t.Fatalf("requests %v = %v; want 1", labels, v)
	}
	if v := value(t, m, "idflow_http_request_duration_seconds", map[string]string{"route": ok.Route, "method": "GET", "status": "2xx"}); v != 3 {
		t.Fatalf("latency samples = %v; want 3", v)
	}
}

func TestHookObservers(t *testing.T) {
	m := New(nil)
	jwks := m.JWKSFetches("oidc")
	jwks(nil)
	jwks(errors.New("jwks fetch: status 500"))
	jwks(errors.New("jwks fetch: status 503"))
	for outcome, want := range map[string]float64{"ok": 1, "error": 2} {
		if v := value(t, m, "idflow_jwks_fetches_total", map[string]string{"source": "oidc", "outcome": outcome}); v != want {
			t.Errorf("jwks %s = %v; want %v", outcome, v, want)
		}
	}
	cache := m.TokenCacheLookups()
	cache(true)
	cache(true)
	cache(false)
	if hit, miss := value(t, m, "idflow_token_cache_lookups_total", map[string]string{"result": "hit"}),
		value(t, m, "idflow_token_cache_lookups_total", map[string]string{"result": "miss"}); hit != 2 || miss != 1 {
		t.Errorf("cache hits %v, misses %v; want 2, 1", hit, miss)
	}
	refresh := m.VaultRefreshes()
	refresh(nil)
	refresh(fmt.Errorf("github: %w", vault.ErrInvalidGrant))
	refresh(errors.New("dial tcp: connection refused"))
	refresh(errors.New("timeout"))
	for outcome, want := range map[string]float64{"ok": 1, "invalid_grant": 1, "error": 2} {
		if v := value(t, m, "idflow_vault_refreshes_total", map[string]string{"outcome": outcome}); v != want {
			t.Errorf("vault refreshes %s = %v; want %v", outcome, v, want)
		}
	}
}

func TestGauges(t *testing.T) {
	m := New(nil)
	n := 0
	if err := m.Gauge(GaugeWebSockets, func() int { return n }); err != nil {
		t.Fatal(err)
	}
	n = 7
	if v := value(t, m, "idflow_websockets_open", map[string]string{}); v != 7 {
		t.Fatalf("idflow_websockets_open = %v; want 7 (read on scrape)", v)
	}
	if err := m.Gauge(GaugeWebSockets, func() int { return 0 }); err == nil {
		t.Fatal("the same gauge registered twice")
	}
	if err := m.Gauge("users_by_email", func() int { return 0 }); err == nil {
		t.Fatal("an unknown gauge was registered")
	}
}

// fakeRuns is a run store and starter that answers what it is told.
type fakeRuns struct {
	RunStore
	err error
}

func (f fakeRuns) UpdateRun(_ context.Context, _ idflow.Principal, id string, u idflow.RunUpdate) (idflow.Run, error) {
	return idflow.Run{ID: id, Status: u.Status}, f.err
}

func (f fakeRuns) Start(context.Context, idflow.Principal, string, json.RawMessage, int) (idflow.Run, error) {
	return idflow.Run{}, f.err
}

func (f fakeRuns) Cancel(context.Context, idflow.Principal, string) (idflow.Run, error) {
	return idflow.Run{}, f.err
}

func TestRunTransitions(t *testing.T) {
	m := New(nil)
	ctx, p := t.Context(), authtest.User("alice", "t-one")
	store := m.CountRunStates(fakeRuns{})
	for _, st := range []string{idflow.RunRunning, idflow.RunRunning, idflow.RunSucceeded, idflow.RunCancelled, "made-up"} {
		if _, err := store.UpdateRun(ctx, p, "run_1", idflow.RunUpdate{Status: st}); err != nil {
			t.Fatal(err)
		}
	}
	conflict := m.CountRunStates(fakeRuns{err: idflow.Errorf(idflow.ECONFLICT, "ended")})
	if _, err := conflict.UpdateRun(ctx, p, "run_1", idflow.RunUpdate{Status: idflow.RunFailed}); err == nil {
		t.Fatal("the wrapper hid the store's error")
	}
	starts := m.CountRunStarts(fakeRuns{})
	for range 4 {
		if _, err := starts.Start(ctx, p, "wf_1", nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.CountRunStarts(fakeRuns{err: idflow.NotFound("workflow")}).Start(ctx, p, "wf_x", nil, 0); err == nil {
		t.Fatal("the wrapper hid the runner's error")
	}
	for state, want := range map[string]float64{"queued": 4, "running": 2, "succeeded": 1, "failed": 0, "cancelled": 1} {
		if v := value(t, m, "idflow_runs_transitions_total", map[string]string{"state": state}); v != want {
			t.Errorf("runs entering %s = %v; want %v", state, v, want)
		}
	}
	if v := value(t, m, "idflow_runs_transitions_total", map[string]string{"state": "made-up"}); v != -1 {
		t.Errorf("a status outside the fixed set became a label value")
	}
}

func TestHandlerServesText(t *testing.T) {
	m := New(nil)
	m.ObserveRequest(httpapi.RequestSample{Route: "unmatched", Method: "other", Status: "4xx", Auth: "none", Refusal: "none"})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`idflow_http_requests_total{auth="none",method="other",refusal="none",route="unmatched",status="4xx"} 1`,
		"# TYPE idflow_http_request_duration_seconds histogram",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}
