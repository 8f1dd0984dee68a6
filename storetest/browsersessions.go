package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/idflow/idflow"
)

// RunBrowserSessions is the conformance suite of idflow.BrowserSessionStore.
func RunBrowserSessions(t *testing.T, open func(t *testing.T) idflow.Store) {
	hash := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
	now := time.Now().UTC().Truncate(time.Microsecond)
	session := func(id, user string, ttl time.Duration) idflow.BrowserSession {
		return idflow.BrowserSession{IDHash: hash(id), UserID: user, CSRF: "csrf-" + id, KeyID: "k1", Sealed: []byte("sealed-" + id),
			CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(ttl)}
	}

	t.Run("Lifecycle", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		ok(t, s.CreateBrowserSession(ctx, session("alice-1", "alice", time.Hour)))
		got := must(s.GetBrowserSession(ctx, hash("alice-1")))(t)
		if got.UserID != "alice" || got.CSRF != "csrf-alice-1" || string(got.Sealed) != "sealed-alice-1" || got.KeyID != "k1" {
			t.Fatalf("got %+v", got)
		}
		_, err := s.GetBrowserSession(ctx, hash("nobody"))
		wantCode(t, err, idflow.ENOTFOUND)

		upd := got
		upd.Sealed, upd.KeyID, upd.UpdatedAt = []byte("resealed"), "k2", now.Add(time.Minute)
		ok(t, s.UpdateBrowserSession(ctx, upd))
		if got := must(s.GetBrowserSession(ctx, hash("alice-1")))(t); string(got.Sealed) != "resealed" || got.KeyID != "k2" {
			t.Fatalf("after update %+v", got)
		}
		ok(t, s.DeleteBrowserSession(ctx, hash("alice-1")))
		_, err = s.GetBrowserSession(ctx, hash("alice-1"))
		wantCode(t, err, idflow.ENOTFOUND)
	})

	t.Run("NeedsAUser", func(t *testing.T) {
		s := open(t)
		err := s.CreateBrowserSession(t.Context(), session("nobody-1", "", time.Hour))
		wantCode(t, err, idflow.EFORBIDDEN)
		_, err = s.GetBrowserSession(t.Context(), hash("nobody-1"))
		wantCode(t, err, idflow.ENOTFOUND)
	})

	t.Run("Expired", func(t *testing.T) {
		s := open(t)
		ok(t, s.CreateBrowserSession(t.Context(), session("old", "alice", -time.Minute)))
		_, err := s.GetBrowserSession(t.Context(), hash("old"))
		wantCode(t, err, idflow.ENOTFOUND)
	})

	t.Run("Isolation", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		ok(t, s.CreateBrowserSession(ctx, session("alice-2", "alice", time.Hour)))
		// bob cannot rewrite alice's session even knowing its hash.
		forged := session("alice-2", "bob", time.Hour)
		forged.Sealed = []byte("bob's tokens")
		err := s.UpdateBrowserSession(ctx, forged)
		wantCode(t, err, idflow.ENOTFOUND)
		if got := must(s.GetBrowserSession(ctx, hash("alice-2")))(t); got.UserID != "alice" || string(got.Sealed) != "sealed-alice-2" {
			t.Fatalf("alice's session changed: %+v", got)
		}
		// Creating a session with an id that exists does not take it over.
		if err := s.CreateBrowserSession(ctx, forged); err == nil {
			t.Fatal("a second session with the same id was created")
		}
		if got := must(s.GetBrowserSession(ctx, hash("alice-2")))(t); got.UserID != "alice" {
			t.Fatalf("alice's session now belongs to %q", got.UserID)
		}
	})
}
