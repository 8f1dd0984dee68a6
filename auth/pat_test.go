package auth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/idflow/idflow"
)

type fakePATs struct {
	grant idflow.TokenGrant
	err   error
	used  int
}

func (f *fakePATs) LookupPersonalToken(_ context.Context, hash string) (idflow.TokenGrant, error) {
	if f.err != nil {
		return idflow.TokenGrant{}, f.err
	}
	return f.grant, nil
}

func (f *fakePATs) PersonalTokenUsed(context.Context, idflow.Principal, idflow.TokenGrant) { f.used++ }

// TestPersonalTokenPrincipal: what auth builds from a token's row, and
// what it refuses even when a store answers a row — a hash that is not
// the token's, a past expiry, an owner that is not the token's, a
// malformed id — without quoting the token.
func TestPersonalTokenPrincipal(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	raw, hash, err := NewPersonalToken()
	if err != nil {
		t.Fatal(err)
	}
	good := idflow.TokenGrant{Hash: hash,
		Token: idflow.PersonalToken{ID: "pat_x", UserID: "alice", Scopes: []string{"read"}, ExpiresAt: now.Add(time.Hour)},
		Owner: idflow.Snapshot{UserID: "alice", TenantID: "t-one", Roles: []string{"admin"}, Groups: []string{"eng"}}}
	f := &fakePATs{grant: good}
	a := New(Config{PersonalTokens: f, Now: func() time.Time { return now }})
	p, err := a.VerifyToken(t.Context(), raw, Audiences{"some-other-audience"})
	if err != nil {
		t.Fatal(err)
	}
	if p.UserID != "alice" || p.TenantID != "t-one" || p.Kind != idflow.KindUser || p.AuthMethod != idflow.AuthPersonalToken ||
		len(p.Scopes) != 1 || p.Scopes[0] != "read" || !p.ExpiresAt.Equal(good.Token.ExpiresAt) || !p.HasGroup("eng") || f.used != 1 {
		t.Fatalf("principal %+v (used %d)", p, f.used)
	}

	refused := map[string]func(g *idflow.TokenGrant){
		"another hash":  func(g *idflow.TokenGrant) { g.Hash = strings.Repeat("0", 64) },
		"expired":       func(g *idflow.TokenGrant) { g.Token.ExpiresAt = now },
		"another owner": func(g *idflow.TokenGrant) { g.Owner.UserID = "bob" },
		"no owner":      func(g *idflow.TokenGrant) { g.Owner.UserID, g.Token.UserID = "", "" },
		"bad user id":   func(g *idflow.TokenGrant) { g.Owner.UserID, g.Token.UserID = "alice\u200b", "alice\u200b" },
	}
	for name, change := range refused {
		g := good
		change(&g)
		f := &fakePATs{grant: g}
		a := New(Config{PersonalTokens: f, Now: func() time.Time { return now }})
		_, err := a.VerifyToken(t.Context(), raw, nil)
		if idflow.ErrorCode(err) != idflow.EUNAUTHORIZED || strings.Contains(err.Error(), raw[8:24]) || f.used != 0 {
			t.Errorf("%s: %v (used %d); want 401 without the token", name, err, f.used)
		}
	}
	// Unknown: 401; the store failing: its error (a 5xx), not a 401.
	a = New(Config{PersonalTokens: &fakePATs{err: idflow.NotFound("token")}})
	if _, err := a.VerifyToken(t.Context(), raw, nil); idflow.ErrorCode(err) != idflow.EUNAUTHORIZED {
		t.Errorf("unknown token: %v", err)
	}
	a = New(Config{PersonalTokens: &fakePATs{err: idflow.Errorf(idflow.EINTERNAL, "storage error")}})
	if _, err := a.VerifyToken(t.Context(), raw, nil); idflow.ErrorCode(err) != idflow.EINTERNAL {
		t.Errorf("store failure: %v", err)
	}
	// Without a token source, and for malformed tokens, the store is never asked.
	if _, err := New(Config{}).VerifyToken(t.Context(), raw, nil); idflow.ErrorCode(err) != idflow.EUNAUTHORIZED {
		t.Errorf("no source: %v", err)
	}
	for _, junk := range []string{"idf_pat_", raw + "A", raw[:len(raw)-1] + "*", "idf_pat_" + strings.Repeat("=", 43)} {
		f := &fakePATs{grant: good}
		if _, err := New(Config{PersonalTokens: f, Now: func() time.Time { return now }}).VerifyToken(t.Context(), junk, nil); idflow.ErrorCode(err) != idflow.EUNAUTHORIZED {
			t.Errorf("%q: %v", junk, err)
		}
	}
}
