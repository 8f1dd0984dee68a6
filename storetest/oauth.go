package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/idflow/idflow"
)

// RunOAuth is the conformance suite of idflow.OAuthStore. open must return
// a new, empty store for each call and register its own cleanup.
func RunOAuth(t *testing.T, open func(t *testing.T) idflow.Store) {
	hash := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
	now := time.Now().UTC().Truncate(time.Microsecond)
	code := func(secret, client string, ttl time.Duration) idflow.OAuthCode {
		return idflow.OAuthCode{Hash: hash(secret), ClientID: client, RedirectURI: "http://127.0.0.1/cb",
			CodeChallenge: "challenge", Resource: "http://idflow/mcp", Scopes: []string{"idflow"}, ExpiresAt: now.Add(ttl)}
	}
	refresh := func(secret string) idflow.OAuthRefresh {
		return idflow.OAuthRefresh{Hash: hash(secret), ClientID: "ignored", Resource: "http://idflow/mcp",
			Scopes: []string{"idflow"}, ExpiresAt: now.Add(time.Hour)}
	}
	grant := func(p idflow.Principal, client string) idflow.OAuthGrant {
		return idflow.OAuthGrant{ClientID: client, ClientName: "Client " + client, RedirectURI: "http://127.0.0.1/cb",
			Scopes: []string{"idflow"}, Identity: p.Snapshot()}
	}

	t.Run("Clients", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		soon, past := now.Add(time.Hour), now.Add(-time.Second)
		ok(t, s.RegisterOAuthClient(ctx, idflow.OAuthClient{ID: "c1", Name: "One", RedirectURIs: []string{"http://127.0.0.1/cb"}, ExpiresAt: &soon}, 2))
		got := must(s.GetOAuthClient(ctx, "c1"))(t)
		if got.Name != "One" || len(got.RedirectURIs) != 1 || got.ExpiresAt == nil {
			t.Fatalf("GetOAuthClient = %+v", got)
		}
		ok(t, s.RegisterOAuthClient(ctx, idflow.OAuthClient{ID: "old", Name: "Old", RedirectURIs: []string{"http://127.0.0.1/cb"}, ExpiresAt: &past}, 3))
		_, err := s.GetOAuthClient(ctx, "old")
		wantCode(t, err, idflow.ENOTFOUND) // expired: forgotten
		// Full (c1 and the expired one, swept first, leave one slot of 2).
		ok(t, s.RegisterOAuthClient(ctx, idflow.OAuthClient{ID: "c2", Name: "Two", RedirectURIs: []string{"http://127.0.0.1/cb"}, ExpiresAt: &soon}, 2))
		err = s.RegisterOAuthClient(ctx, idflow.OAuthClient{ID: "c3", Name: "Three", RedirectURIs: []string{"http://127.0.0.1/cb"}, ExpiresAt: &soon}, 2)
		wantCode(t, err, idflow.ERATELIMIT)
		// Granting a client keeps its registration for good.
		must(s.GrantOAuth(ctx, alice, grant(alice, "c1"), code("code-c1", "c1", time.Minute)))(t)
		if got := must(s.GetOAuthClient(ctx, "c1"))(t); got.ExpiresAt != nil {
			t.Fatalf("a granted client still expires at %v", got.ExpiresAt)
		}
	})

	t.Run("CodeAndRotation", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		g := must(s.GrantOAuth(ctx, alice, grant(alice, "cli"), code("code-1", "cli", time.Minute)))(t)
		if g.UserID != alice.UserID || g.ID == "" || g.Identity.TenantID != alice.TenantID {
			t.Fatalf("GrantOAuth = %+v", g)
		}
		c, g2, err := s.RedeemOAuthCode(ctx, hash("code-1"), refresh("rt-1"), nil)
		ok(t, err)
		if c.UserID != alice.UserID || c.GrantID != g.ID || c.CodeChallenge != "challenge" || g2.ID != g.ID {
			t.Fatalf("RedeemOAuthCode = %+v, %+v", c, g2)
		}
		// A code is spent once, even when the check refuses it.
		must(s.GrantOAuth(ctx, alice, grant(alice, "cli"), code("code-2", "cli", time.Minute)))(t)
		_, _, err = s.RedeemOAuthCode(ctx, hash("code-2"), refresh("rt-y"), func(idflow.OAuthCode) error {
			return idflow.Errorf(idflow.EINVALID, "wrong verifier")
		})
		wantCode(t, err, idflow.EINVALID)
		_, _, err = s.RedeemOAuthCode(ctx, hash("code-2"), refresh("rt-y"), nil)
		wantCode(t, err, idflow.ENOTFOUND)
		_, _, err = s.RedeemOAuthCode(ctx, hash("code-1"), refresh("rt-x"), nil)
		wantCode(t, err, idflow.ENOTFOUND)

		// A client mismatch refuses without spending the token.
		mismatch := idflow.Errorf(idflow.EUNAUTHORIZED, "wrong client")
		_, _, err = s.RotateOAuthRefresh(ctx, hash("rt-1"), refresh("rt-2"), func(idflow.OAuthRefresh) error { return mismatch })
		wantCode(t, err, idflow.EUNAUTHORIZED)
		old, g3, err := s.RotateOAuthRefresh(ctx, hash("rt-1"), refresh("rt-2"), nil)
		ok(t, err)
		if old.UserID != alice.UserID || old.ClientID != "cli" || g3.ID != g.ID {
			t.Fatalf("RotateOAuthRefresh = %+v, %+v", old, g3)
		}
		ok(t, s.OAuthGrantActive(ctx, alice, "cli"))
		wantCode(t, s.OAuthGrantActive(ctx, bob, "cli"), idflow.ENOTFOUND)

		// rt-1 again: reuse, which revokes the grant and with it rt-2.
		_, _, err = s.RotateOAuthRefresh(ctx, hash("rt-1"), refresh("rt-3"), nil)
		if !errors.Is(err, idflow.ErrRefreshReused) {
			t.Fatalf("reusing a rotated refresh token: %v; want ErrRefreshReused", err)
		}
		wantCode(t, s.OAuthGrantActive(ctx, alice, "cli"), idflow.ENOTFOUND)
		_, _, err = s.RotateOAuthRefresh(ctx, hash("rt-2"), refresh("rt-4"), nil)
		wantCode(t, err, idflow.ENOTFOUND)
		if list := must(s.ListOAuthGrants(ctx, alice))(t); len(list) != 0 {
			t.Fatalf("after reuse alice still lists %d grants", len(list))
		}
	})

	t.Run("Expired", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		must(s.GrantOAuth(ctx, alice, grant(alice, "cli"), code("late", "cli", -time.Second)))(t)
		_, _, err := s.RedeemOAuthCode(ctx, hash("late"), refresh("rt"), nil)
		wantCode(t, err, idflow.ENOTFOUND)
		must(s.GrantOAuth(ctx, alice, grant(alice, "cli"), code("fresh", "cli", time.Minute)))(t)
		stale := refresh("stale")
		stale.ExpiresAt = now.Add(-time.Second)
		must2(s.RedeemOAuthCode(ctx, hash("fresh"), stale, nil))(t)
		_, _, err = s.RotateOAuthRefresh(ctx, hash("stale"), refresh("next"), nil)
		wantCode(t, err, idflow.ENOTFOUND)
	})

	t.Run("Isolation", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		ga := must(s.GrantOAuth(ctx, alice, grant(alice, "cli"), code("a", "cli", time.Minute)))(t)
		gb := must(s.GrantOAuth(ctx, bob, grant(bob, "cli"), code("b", "cli", time.Minute)))(t)
		if ga.ID == gb.ID {
			t.Fatal("two users share a grant")
		}
		// Consenting again updates alice's one active grant.
		again := must(s.GrantOAuth(ctx, alice, grant(alice, "cli"), code("a2", "cli", time.Minute)))(t)
		if again.ID != ga.ID {
			t.Fatalf("a second consent made grant %s besides %s", again.ID, ga.ID)
		}
		if list := must(s.ListOAuthGrants(ctx, bob))(t); len(list) != 1 || list[0].ID != gb.ID || list[0].UserID != bob.UserID {
			t.Fatalf("bob lists %+v", list)
		}
		// Bob cannot revoke alice's grant: not found, and it stands.
		wantCode(t, s.RevokeOAuthGrant(ctx, bob, ga.ID), idflow.ENOTFOUND)
		ok(t, s.OAuthGrantActive(ctx, alice, "cli"))
		wantCode(t, s.RevokeOAuthGrant(ctx, svc, ga.ID), idflow.EFORBIDDEN)
		_, err := s.ListOAuthGrants(ctx, svc)
		wantCode(t, err, idflow.EFORBIDDEN)

		ok(t, s.RevokeOAuthGrant(ctx, alice, ga.ID))
		wantCode(t, s.OAuthGrantActive(ctx, alice, "cli"), idflow.ENOTFOUND)
		wantCode(t, s.RevokeOAuthGrant(ctx, alice, ga.ID), idflow.ENOTFOUND)
		// Its pending code went with it.
		_, _, err = s.RedeemOAuthCode(ctx, hash("a2"), refresh("rt-a"), nil)
		wantCode(t, err, idflow.ENOTFOUND)
		ok(t, s.OAuthGrantActive(ctx, bob, "cli"))

		// Deactivating bob revokes every grant of his.
		must(s.GrantOAuth(ctx, bob, grant(bob, "other"), code("b2", "other", time.Minute)))(t)
		if n := must(s.RevokeOAuthGrantsOf(ctx, admin, bob.UserID))(t); n != 2 {
			t.Fatalf("RevokeOAuthGrantsOf revoked %d grants; want 2", n)
		}
		wantCode(t, s.OAuthGrantActive(ctx, bob, "cli"), idflow.ENOTFOUND)
		_, _, err = s.RedeemOAuthCode(ctx, hash("b2"), refresh("rt-b"), nil)
		wantCode(t, err, idflow.ENOTFOUND)
	})
}

func must2[A, B any](a A, b B, err error) func(t *testing.T) {
	return func(t *testing.T) {
		t.Helper()
		ok(t, err)
	}
}
