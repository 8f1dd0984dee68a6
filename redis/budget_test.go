package redis

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/budget"
	"github.com/idflow/idflow/internal/testsvc"
)

// TestBudgetAcrossReplicas: two replicas' budgets on one Redis draw on the
// same counters: concurrent reservations on both never pass alice's
// budget together, her spend reads the same on both, and a reset on one is
// seen by the other.
func TestBudgetAcrossReplicas(t *testing.T) {
	addr := testsvc.StartRedis(t)
	now := func() time.Time { return time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC) }
	cfg := budget.Config{Limits: budget.Limits{UserDay: 10_000, TenantMonth: 1_000_000}, Now: now, CompletionReserve: 1000}
	replicas := make([]*budget.Budgets, 2)
	for i := range replicas {
		c := cfg
		c.Counter = NewBudgetCounter(open(t, addr))
		replicas[i] = budget.New(c)
	}
	alice := authtest.User("alice", "t-one")
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for i := range 30 {
		wg.Go(func() {
			_, err := replicas[i%2].Reserve(ctx, alice, 0)
			switch {
			case err == nil:
				mu.Lock()
				admitted++
				mu.Unlock()
			case idflow.ErrorCode(err) != idflow.ERATELIMIT:
				t.Errorf("reserve: %v", err)
			}
		})
	}
	wg.Wait()
	if admitted != 10 {
		t.Fatalf("%d reservations of 1000 admitted on a budget of 10000 across two replicas", admitted)
	}
	for i, r := range replicas {
		st, err := r.StatusOf(ctx, alice)
		if err != nil || st.UserDay.Used != 10_000 || *st.UserDay.Remaining != 0 || st.TenantMonth.Used != 10_000 {
			t.Fatalf("replica %d: %+v %v", i, st, err)
		}
	}
	if err := replicas[0].Reset(ctx, "t-one", "alice", ""); err != nil {
		t.Fatal(err)
	}
	if err := replicas[1].Check(ctx, alice, 0); err != nil {
		t.Fatalf("after the reset on the other replica: %v", err)
	}
	res, err := replicas[1].Reserve(ctx, alice, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := replicas[1].Settle(ctx, res, 250); err != nil {
		t.Fatal(err)
	}
	if st, _ := replicas[0].StatusOf(ctx, alice); st.UserDay.Used != 250 {
		t.Fatalf("settled spend on the other replica: %d", st.UserDay.Used)
	}
}
