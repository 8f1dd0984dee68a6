package budget

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/authz"
	"github.com/idflow/idflow/llm"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// countingModel answers with fixed usage and counts its calls.
type countingModel struct {
	mu    sync.Mutex
	calls int
	usage idflow.Usage
}

func (m *countingModel) Chat(ctx context.Context, p idflow.Principal, req idflow.ChatRequest, onDelta func(string) error) (idflow.ChatResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	return idflow.ChatResponse{Model: req.Model, Content: "ok", Usage: m.usage}, nil
}

func ask(text string) idflow.ChatRequest {
	return idflow.ChatRequest{Model: "m", Messages: []idflow.ChatMessage{{Role: "user", Content: text}}}
}

func TestParse(t *testing.T) {
	l, err := Parse("user.day=200k, user.month=4M,tenant.day=1000000,tenant.month=off")
	if err != nil || l != (Limits{UserDay: 200_000, UserMonth: 4_000_000, TenantDay: 1_000_000}) {
		t.Fatalf("%+v %v", l, err)
	}
	if back, err := Parse(l.String()); err != nil || back != l {
		t.Fatalf("round trip %q: %+v %v", l.String(), back, err)
	}
	for _, bad := range []string{"user.day", "user.week=1", "user.day=0", "user.day=-5", "user.day=1,user.day=2", "user.day=1G", "user.day=+1", "tenant.day=2000000000M"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"user.day=200k", "tenant.month=3M,user.day=off", "", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := Parse(s)
		if err != nil {
			return
		}
		for _, n := range []int64{l.UserDay, l.UserMonth, l.TenantDay, l.TenantMonth} {
			if n < 0 || n > maxTokens {
				t.Fatalf("%q: %+v out of bounds", s, l)
			}
		}
		if back, err := Parse(l.String()); err != nil || back != l {
			t.Fatalf("%q: round trip %+v %v", s, back, err)
		}
	})
}

// TestBudgetStopsSpendBeforeTheModel: alice's calls are reserved from
// their estimate and settled to the reported usage; the call that would
// pass her daily budget is refused ERATELIMIT with the budget and when it
// renews, and the model is not called; bob, same tenant, is unaffected;
// the refusal is reported for the audit and the metric.
func TestBudgetStopsSpendBeforeTheModel(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC)}
	var refusals []string
	b := New(Config{Limits: Limits{UserDay: 3000}, Now: clk.Now, CompletionReserve: 100,
		OnExhausted: func(_ context.Context, p idflow.Principal, reason, _ string) {
			refusals = append(refusals, p.UserID+"/"+reason)
		}})
	inner := &countingModel{usage: idflow.Usage{PromptTokens: 900, CompletionTokens: 100}}
	m := Model{Model: inner, Budgets: b}
	alice, bob := authtest.User("alice", "t-one"), authtest.User("bob", "t-one")
	ctx := context.Background()
	for i := range 2 {
		if _, err := m.Chat(ctx, alice, ask("hello"), nil); err != nil {
			t.Fatalf("alice's call %d: %v", i+1, err)
		}
	}
	st, err := b.StatusOf(ctx, alice)
	if err != nil || st.UserDay.Used != 2000 || *st.UserDay.Remaining != 1000 || st.UserMonth.Remaining != nil {
		t.Fatalf("after two calls: %+v %v", st, err)
	}
	// 2000 used + a reservation of 2 + 100 fits; the settlement brings it to 3000.
	if _, err := m.Chat(ctx, alice, ask("again"), nil); err != nil {
		t.Fatalf("alice's third call: %v", err)
	}
	_, err = m.Chat(ctx, alice, ask("one more"), nil)
	if idflow.ErrorCode(err) != idflow.ERATELIMIT || !strings.Contains(err.Error(), "your daily model token budget of 3000 tokens is spent") ||
		!strings.Contains(err.Error(), "renews at 2026-12-02T00:00:00Z") {
		t.Fatalf("alice's fourth call: %v", err)
	}
	if inner.calls != 3 {
		t.Fatalf("the model was called %d times; the refused call must not reach it", inner.calls)
	}
	if err := b.Check(ctx, alice, 1); idflow.ErrorCode(err) != idflow.ERATELIMIT {
		t.Fatalf("Check for alice: %v", err)
	}
	if _, err := m.Chat(ctx, bob, ask("hello"), nil); err != nil {
		t.Fatalf("bob: %v", err)
	}
	if strings.Join(refusals, ",") != "alice/budget_user_day,alice/budget_user_day" {
		t.Fatalf("refusals: %v", refusals)
	}
	// Midnight UTC on the injected clock: a new day, a fresh budget.
	clk.Set(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	if _, err := m.Chat(ctx, alice, ask("new day"), nil); err != nil {
		t.Fatalf("alice on the next day: %v", err)
	}
}

// TestMonthAndTenantBudgets: the monthly budget spans days and renews on
// the first of the month; the tenant's budget is shared by its users (bob
// is refused once alice spent it) and not by another tenant's (carol).
func TestMonthAndTenantBudgets(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	b := New(Config{Limits: Limits{UserMonth: 2500, TenantDay: 4000}, Now: clk.Now, CompletionReserve: 1})
	m := Model{Model: &countingModel{usage: idflow.Usage{PromptTokens: 1000}}, Budgets: b}
	alice, bob, carol := authtest.User("alice", "t-one"), authtest.User("bob", "t-one"), authtest.User("carol", "t-two")
	ctx := context.Background()
	call := func(p idflow.Principal) error { _, err := m.Chat(ctx, p, ask("x"), nil); return err }
	for _, d := range []int{29, 30} {
		clk.Set(time.Date(2026, 11, d, 12, 0, 0, 0, time.UTC))
		if err := call(alice); err != nil {
			t.Fatalf("alice on the %d: %v", d, err)
		}
	}
	// 2000 spent of 2500: the next call's reservation fits, and its
	// settlement takes the month past the budget (a budget can be passed
	// by the last call it admitted, never by one more).
	if err := call(alice); err != nil {
		t.Fatalf("alice's third call of the month: %v", err)
	}
	if err := call(alice); idflow.ErrorCode(err) != idflow.ERATELIMIT || !strings.Contains(err.Error(), "monthly") ||
		!strings.Contains(err.Error(), "2026-12-01T00:00:00Z") {
		t.Fatalf("alice's fourth call of the month: %v", err)
	}
	// t-one has spent 2000 today (alice's); bob brings it to 4000, its budget.
	for range 2 {
		if err := call(bob); err != nil {
			t.Fatalf("bob: %v", err)
		}
	}
	if err := call(bob); idflow.ErrorCode(err) != idflow.ERATELIMIT || !strings.Contains(err.Error(), "organization's daily") {
		t.Fatalf("bob past the tenant's day: %v", err)
	}
	if err := call(carol); err != nil {
		t.Fatalf("carol, another tenant: %v", err)
	}
	clk.Set(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if err := call(alice); err != nil {
		t.Fatalf("alice in December: %v", err)
	}
}

// TestFailedCallReleases: a call the model fails is not counted.
func TestFailedCallReleases(t *testing.T) {
	b := New(Config{Limits: Limits{UserDay: 10_000}})
	m := Model{Model: llm.Echo{}, Budgets: b}
	p := authtest.User("alice", "t-one")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	failing := Model{Model: failModel{}, Budgets: b}
	if _, err := failing.Chat(ctx, p, ask(strings.Repeat("word ", 1000)), nil); err == nil {
		t.Fatal("the failing model answered")
	}
	st, _ := b.StatusOf(context.Background(), p)
	if st.UserDay.Used != 0 {
		t.Fatalf("a failed call left %d tokens counted", st.UserDay.Used)
	}
	if _, err := m.Chat(context.Background(), p, ask("two words"), nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.StatusOf(context.Background(), p); st.UserDay.Used == 0 || st.UserDay.Used > 10 {
		t.Fatalf("echo's usage settled to %d", st.UserDay.Used)
	}
}

type failModel struct{}

func (failModel) Chat(ctx context.Context, p idflow.Principal, req idflow.ChatRequest, onDelta func(string) error) (idflow.ChatResponse, error) {
	return idflow.ChatResponse{}, idflow.Errorf(idflow.EUNAVAILABLE, "model down")
}

// TestPolicyOverridesAndReset: a group's rule in the policy file raises
// (or lifts) its members' budget, a tenant's rule its tenant's; an admin's
// reset of a user starts that user's day over, and reaches only users of
// the tenant it names.
func TestPolicyOverridesAndReset(t *testing.T) {
	pol, err := authz.Parse([]byte(`{"features": {},
		"user_budgets": [{"groups": ["research"], "day": 5000}, {"roles": ["power"], "day": -1}],
		"tenant_budgets": {"t-two": {"day": 100}}}`))
	if err != nil {
		t.Fatal(err)
	}
	b := New(Config{Limits: Limits{UserDay: 1000, TenantDay: 1_000_000}, Policy: pol, CompletionReserve: 1})
	alice := authtest.User("alice", "t-one")
	researcher := authtest.User("rita", "t-one")
	researcher.Groups = []string{"research"}
	power := authtest.User("pat", "t-one", "power")
	power.Groups = []string{"research"}
	carol := authtest.User("carol", "t-two")
	for _, tc := range []struct {
		p    idflow.Principal
		want Limits
	}{
		{alice, Limits{UserDay: 1000, TenantDay: 1_000_000}},
		{researcher, Limits{UserDay: 5000, TenantDay: 1_000_000}},
		{power, Limits{TenantDay: 1_000_000}},
		{carol, Limits{UserDay: 1000, TenantDay: 100}},
	} {
		if got := b.LimitsFor(tc.p); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.p.UserID, got, tc.want)
		}
	}
	ctx := context.Background()
	if _, err := b.Reserve(ctx, alice, 2000); idflow.ErrorCode(err) != idflow.ERATELIMIT {
		t.Fatalf("alice over her day: %v", err)
	}
	r, err := b.Reserve(ctx, alice, 500)
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Settle(ctx, r, 1000)
	if err := b.Check(ctx, alice, 0); idflow.ErrorCode(err) != idflow.ERATELIMIT {
		t.Fatalf("alice spent: %v", err)
	}
	// A reset naming alice's id under another tenant does not reach her.
	if err := b.Reset(ctx, "t-two", "alice", ""); err != nil {
		t.Fatal(err)
	}
	if err := b.Check(ctx, alice, 0); idflow.ErrorCode(err) != idflow.ERATELIMIT {
		t.Fatalf("another tenant's reset reached alice: %v", err)
	}
	if err := b.Reset(ctx, "t-one", "alice", "day"); err != nil {
		t.Fatal(err)
	}
	if err := b.Check(ctx, alice, 0); err != nil {
		t.Fatalf("alice after her reset: %v", err)
	}
	if err := b.Reset(ctx, "t-one", "", "week"); idflow.ErrorCode(err) != idflow.EINVALID {
		t.Fatalf("period week: %v", err)
	}
}

// TestConcurrentReservationsNeverPassTheBudget: many calls at once on one
// budget are admitted only while their reservations fit.
func TestConcurrentReservationsNeverPassTheBudget(t *testing.T) {
	b := New(Config{Limits: Limits{UserDay: 10_000}, CompletionReserve: 1000})
	p := authtest.User("alice", "t-one")
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for range 50 {
		wg.Go(func() {
			if _, err := b.Reserve(context.Background(), p, 0); err == nil {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if admitted != 10 {
		t.Fatalf("%d reservations of 1000 admitted on a budget of 10000", admitted)
	}
}
