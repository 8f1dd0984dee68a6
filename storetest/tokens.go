package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/idflow/idflow"
)

func tokenHash(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }

// testTokens: personal access tokens are owner-scoped everywhere but the
// lookup by hash, which answers only live tokens and the owner's snapshot.
func testTokens(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	in := idflow.PersonalToken{Name: "  ci script ", Scopes: []string{idflow.ScopeRead, idflow.ScopeMCP}, ExpiresAt: time.Now().Add(time.Hour)}
	tok := must(s.CreatePersonalToken(ctx, alice, in, tokenHash("alice-1")))(t)
	if tok.UserID != alice.UserID || tok.Name != "ci script" || !slices.Equal(tok.Scopes, in.Scopes) || tok.LastUsedAt != nil || !idflow.IsNewID(idflow.PrefixToken, tok.ID) {
		t.Fatalf("created %+v", tok)
	}
	g := must(s.LookupPersonalToken(ctx, tokenHash("alice-1")))(t)
	if g.Token.ID != tok.ID || g.Hash != tokenHash("alice-1") || g.Owner.UserID != alice.UserID || g.Owner.TenantID != alice.TenantID ||
		!g.Token.ExpiresAt.Equal(tok.ExpiresAt) {
		t.Fatalf("lookup %+v", g)
	}
	_, err := s.LookupPersonalToken(ctx, tokenHash("nobody"))
	wantNotFound(t, err, "token")

	// Expired tokens are not found; listed still.
	old := in
	old.ExpiresAt = time.Now().Add(-time.Second)
	expired := must(s.CreatePersonalToken(ctx, alice, old, tokenHash("alice-old")))(t)
	_, err = s.LookupPersonalToken(ctx, tokenHash("alice-old"))
	wantNotFound(t, err, "token")

	// Touch: the owner's own token only.
	at := time.Now().UTC().Truncate(time.Microsecond)
	ok(t, s.TouchPersonalToken(ctx, alice, tok.ID, at))
	ok(t, s.TouchPersonalToken(ctx, bob, tok.ID, at.Add(time.Hour))) // changes nothing of alice's
	g = must(s.LookupPersonalToken(ctx, tokenHash("alice-1")))(t)
	if g.Token.LastUsedAt == nil || !g.Token.LastUsedAt.Equal(at) {
		t.Fatalf("last used %v; want %v", g.Token.LastUsedAt, at)
	}

	// Isolation: bob sees and revokes nothing of alice's.
	if l := must(s.ListPersonalTokens(ctx, bob, idflow.Page{}))(t); len(l.Items) != 0 {
		t.Fatalf("bob lists %+v", l.Items)
	}
	wantNotFound(t, s.DeletePersonalToken(ctx, bob, tok.ID), "token")
	if l := must(s.ListPersonalTokens(ctx, alice, idflow.Page{}))(t); len(l.Items) != 2 || l.Items[0].ID != expired.ID || l.Items[1].ID != tok.ID {
		t.Fatalf("alice lists %+v", l.Items)
	}
	_, err = s.CreatePersonalToken(ctx, svc, in, tokenHash("svc"))
	wantCode(t, err, idflow.EFORBIDDEN)

	// Revoked: gone from the lookup.
	ok(t, s.DeletePersonalToken(ctx, alice, tok.ID))
	_, err = s.LookupPersonalToken(ctx, tokenHash("alice-1"))
	wantNotFound(t, err, "token")
	wantNotFound(t, s.DeletePersonalToken(ctx, alice, tok.ID), "token")

	// Bounded: at most MaxTokensPerUser live ones (the expired one does not count).
	for i := range idflow.MaxTokensPerUser {
		must(s.CreatePersonalToken(ctx, bob, in, tokenHash(fmt.Sprint("bob-", i))))(t)
	}
	_, err = s.CreatePersonalToken(ctx, bob, in, tokenHash("bob-one-more"))
	wantCode(t, err, idflow.ECONFLICT)

	// Refused input.
	bad := in
	bad.Scopes = []string{"admin"}
	_, err = s.CreatePersonalToken(ctx, carol, bad, tokenHash("carol"))
	wantCode(t, err, idflow.EINVALID)
}
