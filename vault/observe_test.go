package vault_test

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow/vault"
)

// TestOnRefreshSeesEveryOutcome: each refresh sent to the provider is
// reported once, as a success, an invalid_grant or an outage; a token
// still fresh is not a refresh.
func TestOnRefreshSeesEveryOutcome(t *testing.T) {
	ctx := t.Context()
	var mu sync.Mutex
	var got []string
	w := newWorld(t, func(c *vault.Config) {
		c.OnRefresh = func(err error) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				got = append(got, "ok")
			case errors.Is(err, vault.ErrInvalidGrant):
				got = append(got, "invalid_grant")
			default:
				got = append(got, "error")
			}
		}
	})
	outcomes := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
	w.connect(t, alice, time.Hour)
	w.connect(t, bob, time.Hour)
	if _, err := w.v.Get(ctx, alice, "fake"); err != nil || len(outcomes()) != 0 {
		t.Fatalf("a fresh token: %v, outcomes %v; want no refresh", err, outcomes())
	}
	w.clock.Advance(58 * time.Minute)
	if _, err := w.v.Get(ctx, alice, "fake"); err != nil {
		t.Fatal(err)
	}
	w.te.refuse(bob.UserID)
	if _, err := w.v.Get(ctx, bob, "fake"); err == nil {
		t.Fatal("bob's refused refresh answered a token")
	}
	w.clock.Advance(58 * time.Minute)
	w.te.srv.Close()
	if _, err := w.v.Get(ctx, alice, "fake"); err != nil {
		t.Fatalf("an outage with time left on the token: %v", err)
	}
	want := []string{"ok", "invalid_grant", "error"}
	if o := outcomes(); !slices.Equal(o, want) {
		t.Fatalf("outcomes %v; want %v", o, want)
	}
}
