package storetest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/idflow/idflow"
)

// RunConnections is the conformance suite of idflow.ConnectionStore. open
// must return a new, empty store for each call and register its own cleanup.
func RunConnections(t *testing.T, open func(t *testing.T) idflow.ConnectionStore) {
	t.Run("Lifecycle", func(t *testing.T) { testConnectionLifecycle(t, open(t)) })
	t.Run("Isolation", func(t *testing.T) { testConnectionIsolation(t, open(t)) })
	t.Run("AppOnly", func(t *testing.T) { testConnectionAppOnly(t, open(t)) })
	t.Run("States", func(t *testing.T) { testConnectStates(t, open(t)) })
	t.Run("StateIsolation", func(t *testing.T) { testConnectStateIsolation(t, open(t)) })
}

func sealed(provider, keyID string, ct string, exp time.Time) idflow.SealedCredential {
	return idflow.SealedCredential{Provider: provider, KeyID: keyID, Ciphertext: []byte(ct),
		Status: idflow.ConnectionActive, Scopes: []string{"read", "write"}, ExpiresAt: &exp}
}

func testConnectionLifecycle(t *testing.T, s idflow.ConnectionStore) {
	ctx := t.Context()
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	if list := must(s.ListConnections(ctx, alice))(t); len(list) != 0 {
		t.Fatalf("a new store lists %d connections", len(list))
	}
	c := must(s.PutCredential(ctx, alice, sealed("github", "k1", "ciphertext-1", exp)))(t)
	if c.Provider != "github" || c.UserID != alice.UserID || c.Status != idflow.ConnectionActive ||
		len(c.Scopes) != 2 || c.ExpiresAt == nil || !c.ExpiresAt.Equal(exp) || c.CreatedAt.IsZero() || !c.UpdatedAt.Equal(c.CreatedAt) {
		t.Fatalf("PutCredential = %+v", c)
	}
	got := must(s.GetCredential(ctx, alice, "github"))(t)
	if got.Provider != "github" || got.KeyID != "k1" || string(got.Ciphertext) != "ciphertext-1" ||
		got.Status != idflow.ConnectionActive || got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) || len(got.Scopes) != 2 {
		t.Fatalf("GetCredential = %+v", got)
	}
	wantUTC(t, "connection times", *c.ExpiresAt, *got.ExpiresAt, c.CreatedAt)

	// No scopes read back as [], never null.
	bare := sealed("bare", "k1", "ciphertext-0", exp)
	bare.Scopes = nil
	if c := must(s.PutCredential(ctx, alice, bare))(t); c.Scopes == nil {
		t.Fatalf("a credential without scopes: %#v; want non-nil Scopes", c.Scopes)
	}
	if c := must(s.GetCredential(ctx, alice, "bare"))(t); c.Scopes == nil {
		t.Fatalf("a credential without scopes reads %#v; want non-nil Scopes", c.Scopes)
	}
	ok(t, s.DeleteCredential(ctx, alice, "bare"))

	// Replacing keeps created_at and moves updated_at.
	replaced := sealed("github", "k2", "ciphertext-2", exp.Add(time.Hour))
	replaced.Scopes = nil
	c2 := must(s.PutCredential(ctx, alice, replaced))(t)
	if !c2.CreatedAt.Equal(c.CreatedAt) || !c2.UpdatedAt.After(c.UpdatedAt) || len(c2.Scopes) != 0 || c2.Scopes == nil {
		t.Fatalf("replaced: %+v (first %+v); want the same created_at, a later updated_at, scopes []", c2, c)
	}
	if got := must(s.GetCredential(ctx, alice, "github"))(t); got.KeyID != "k2" || string(got.Ciphertext) != "ciphertext-2" {
		t.Fatalf("after replace: %+v", got)
	}
	noExp := sealed("gitlab", "k1", "ct", exp)
	noExp.ExpiresAt = nil
	must(s.PutCredential(ctx, alice, noExp))(t)
	list := must(s.ListConnections(ctx, alice))(t)
	if len(list) != 2 || list[0].Provider != "github" || list[1].Provider != "gitlab" || list[1].ExpiresAt != nil {
		t.Fatalf("ListConnections = %+v", list)
	}

	ok(t, s.SetConnectionStatus(ctx, alice, "github", idflow.ConnectionNeedsConsent))
	if got := must(s.GetCredential(ctx, alice, "github"))(t); got.Status != idflow.ConnectionNeedsConsent {
		t.Fatalf("status after SetConnectionStatus: %q", got.Status)
	}
	wantCode(t, s.SetConnectionStatus(ctx, alice, "github", "shared"), idflow.EINVALID)
	wantNotFound(t, s.SetConnectionStatus(ctx, alice, "nope", idflow.ConnectionActive), "connection")
	bad := sealed("x", "k1", "ct", exp)
	bad.Status = "borrowed"
	_, err := s.PutCredential(ctx, alice, bad)
	wantCode(t, err, idflow.EINVALID)

	ok(t, s.DeleteCredential(ctx, alice, "github"))
	_, err = s.GetCredential(ctx, alice, "github")
	wantNotFound(t, err, "connection")
	wantNotFound(t, s.DeleteCredential(ctx, alice, "github"), "connection")
	if list := must(s.ListConnections(ctx, alice))(t); len(list) != 1 || list[0].Provider != "gitlab" {
		t.Fatalf("after delete: %+v", list)
	}
}

// testConnectionIsolation: bob never sees, reads, changes, overwrites or
// deletes alice's credential.
func testConnectionIsolation(t *testing.T, s idflow.ConnectionStore) {
	ctx := t.Context()
	exp := time.Now().Add(time.Hour)
	must(s.PutCredential(ctx, alice, sealed("github", "k1", "alice-secret", exp)))(t)
	aliceHas := func() {
		t.Helper()
		got := must(s.GetCredential(ctx, alice, "github"))(t)
		if got.KeyID != "k1" || !bytes.Equal(got.Ciphertext, []byte("alice-secret")) || got.Status != idflow.ConnectionActive {
			t.Fatalf("alice's credential changed: %+v", got)
		}
	}

	for _, p := range []idflow.Principal{bob, carol, admin} {
		if list := must(s.ListConnections(ctx, p))(t); len(list) != 0 {
			t.Fatalf("%s lists %+v", p.UserID, list)
		}
		_, err := s.GetCredential(ctx, p, "github")
		wantNotFound(t, err, "connection")
		wantNotFound(t, s.SetConnectionStatus(ctx, p, "github", idflow.ConnectionNeedsConsent), "connection")
		wantNotFound(t, s.DeleteCredential(ctx, p, "github"), "connection")
		aliceHas()
	}

	// bob connecting the same provider makes his own row, beside alice's.
	c := must(s.PutCredential(ctx, bob, sealed("github", "k9", "bob-secret", exp)))(t)
	if c.UserID != bob.UserID {
		t.Fatalf("bob's connection belongs to %q", c.UserID)
	}
	aliceHas()
	if got := must(s.GetCredential(ctx, bob, "github"))(t); string(got.Ciphertext) != "bob-secret" {
		t.Fatalf("bob reads %q", got.Ciphertext)
	}
	ok(t, s.DeleteCredential(ctx, bob, "github"))
	aliceHas()
	if list := must(s.ListConnections(ctx, alice))(t); len(list) != 1 || list[0].UserID != alice.UserID {
		t.Fatalf("alice's list: %+v", list)
	}
}

func testConnectionAppOnly(t *testing.T, s idflow.ConnectionStore) {
	ctx := t.Context()
	exp := time.Now().Add(time.Hour)
	_, err := s.PutCredential(ctx, svc, sealed("github", "k1", "ct", exp))
	wantCode(t, err, idflow.EFORBIDDEN)
	_, err = s.ListConnections(ctx, svc)
	wantCode(t, err, idflow.EFORBIDDEN)
	_, err = s.GetCredential(ctx, svc, "github")
	wantCode(t, err, idflow.EFORBIDDEN)
	wantCode(t, s.SetConnectionStatus(ctx, svc, "github", idflow.ConnectionActive), idflow.EFORBIDDEN)
	wantCode(t, s.DeleteCredential(ctx, svc, "github"), idflow.EFORBIDDEN)
	wantCode(t, s.SaveConnectState(ctx, svc, idflow.ConnectState{State: "s", Provider: "github", ExpiresAt: exp}), idflow.EFORBIDDEN)
	_, err = s.TakeConnectState(ctx, svc, "s")
	wantCode(t, err, idflow.EFORBIDDEN)
	var zero idflow.Principal
	_, err = s.GetCredential(ctx, zero, "github")
	wantCode(t, err, idflow.EFORBIDDEN)
}

func testConnectStates(t *testing.T, s idflow.ConnectionStore) {
	ctx := t.Context()
	exp := time.Now().Add(10 * time.Minute).UTC().Truncate(time.Microsecond)
	st := idflow.ConnectState{State: "state-1", Provider: "github", CodeVerifier: "verifier-1",
		RedirectURI: "https://idflow.example/api/v1/connections/github/callback", ExpiresAt: exp}
	ok(t, s.SaveConnectState(ctx, alice, st))
	got := must(s.TakeConnectState(ctx, alice, "state-1"))(t)
	if got.State != st.State || got.Provider != st.Provider || got.CodeVerifier != st.CodeVerifier ||
		got.RedirectURI != st.RedirectURI || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("TakeConnectState = %+v, want %+v", got, st)
	}
	_, err := s.TakeConnectState(ctx, alice, "state-1") // single use
	wantNotFound(t, err, "connect state")
	_, err = s.TakeConnectState(ctx, alice, "never-saved")
	wantNotFound(t, err, "connect state")

	expired := st
	expired.State, expired.ExpiresAt = "state-old", time.Now().Add(-time.Second)
	ok(t, s.SaveConnectState(ctx, alice, expired))
	_, err = s.TakeConnectState(ctx, alice, "state-old")
	wantNotFound(t, err, "connect state")

	wantCode(t, s.SaveConnectState(ctx, alice, idflow.ConnectState{Provider: "github", ExpiresAt: exp}), idflow.EINVALID)

	// A user's pending flows are bounded: the oldest go first.
	for i := range 25 {
		s2 := st
		s2.State = fmt.Sprintf("pending-%02d", i)
		ok(t, s.SaveConnectState(ctx, alice, s2))
	}
	_, err = s.TakeConnectState(ctx, alice, "pending-00")
	wantNotFound(t, err, "connect state")
	must(s.TakeConnectState(ctx, alice, "pending-24"))(t)
	must(s.TakeConnectState(ctx, alice, "pending-05"))(t)
}

// testConnectStateIsolation: bob cannot take alice's state, and taking it
// as bob does not consume it.
func testConnectStateIsolation(t *testing.T, s idflow.ConnectionStore) {
	ctx := t.Context()
	exp := time.Now().Add(10 * time.Minute)
	ok(t, s.SaveConnectState(ctx, alice, idflow.ConnectState{State: "alice-state", Provider: "github",
		CodeVerifier: "alice-verifier", RedirectURI: "https://x/cb", ExpiresAt: exp}))
	for _, p := range []idflow.Principal{bob, carol, admin} {
		_, err := s.TakeConnectState(ctx, p, "alice-state")
		wantNotFound(t, err, "connect state")
	}
	// The same state string saved by bob is bob's own, beside alice's.
	ok(t, s.SaveConnectState(ctx, bob, idflow.ConnectState{State: "alice-state", Provider: "gitlab",
		CodeVerifier: "bob-verifier", RedirectURI: "https://x/cb", ExpiresAt: exp}))
	if got := must(s.TakeConnectState(ctx, bob, "alice-state"))(t); got.Provider != "gitlab" || got.CodeVerifier != "bob-verifier" {
		t.Fatalf("bob took %+v", got)
	}
	if got := must(s.TakeConnectState(ctx, alice, "alice-state"))(t); got.Provider != "github" || got.CodeVerifier != "alice-verifier" {
		t.Fatalf("alice took %+v", got)
	}
}
