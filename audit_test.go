package idflow

import (
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"
)

// TestAuditEventBounded: whatever a request carried, every field of an
// audit row stays within its bound, stays valid UTF-8 without NUL, and two
// different long identities stay different.
func TestAuditEventBounded(t *testing.T) {
	short := AuditEvent{UserID: "u-1", TenantID: "t-1", Action: "app.create", Resource: "app_1",
		Outcome: OutcomeSuccess, RequestID: "r-1", Peer: "127.0.0.1:5000", Detail: "line one\nline \"two\""}
	if got := short.Bounded(); got != short {
		t.Fatalf("a small event was changed: %+v", got)
	}

	huge := strings.Repeat("é", 1<<20) // 2 MiB of two-byte runes
	long := AuditEvent{UserID: "u-" + huge, TenantID: huge, Action: huge, Resource: "GET /" + huge,
		Outcome: huge, RequestID: huge, Peer: huge, Detail: "bad token: " + huge}
	b := long.Bounded()
	for name, f := range map[string]struct {
		v   string
		max int
	}{
		"user_id": {b.UserID, maxAuditIdentity}, "tenant_id": {b.TenantID, maxAuditIdentity},
		"request_id": {b.RequestID, maxAuditIdentity}, "action": {b.Action, maxAuditAction},
		"outcome": {b.Outcome, maxAuditAction}, "resource": {b.Resource, maxAuditResource},
		"peer": {b.Peer, maxAuditPeer}, "detail": {b.Detail, maxAuditDetail},
	} {
		if len(f.v) > f.max || len(f.v) == 0 || !utf8.ValidString(f.v) {
			t.Errorf("%s: %d bytes (max %d), valid UTF-8 %v", name, len(f.v), f.max, utf8.ValidString(f.v))
		}
	}
	if !strings.HasPrefix(b.Detail, "bad token: éé") || !strings.HasSuffix(b.Detail, "…") {
		t.Errorf("detail not cut at a rune with a mark: %q…", b.Detail[:40])
	}
	if !strings.HasPrefix(b.UserID, "sha256:") || b.UserID == b.TenantID {
		t.Errorf("long identities: user %q tenant %q", b.UserID, b.TenantID)
	}
	other := long
	other.UserID = "u-" + huge[:len(huge)-2] + "e"
	if other.Bounded().UserID == b.UserID {
		t.Error("two long user ids with the same prefix became one")
	}
	if again := b.Bounded(); again != b {
		t.Error("Bounded is not idempotent")
	}

	dirty := AuditEvent{Detail: "a\x00b\xffc", Resource: "GET /\x00", UserID: "alice\x00admin"}.Bounded()
	if dirty.Detail != "a\uFFFDb\uFFFDc" || dirty.Resource != "GET /\uFFFD" {
		t.Errorf("NUL and invalid UTF-8 kept: %q %q", dirty.Detail, dirty.Resource)
	}
	if !strings.HasPrefix(dirty.UserID, "sha256:") {
		t.Errorf("a user id with NUL kept as %q", dirty.UserID)
	}
}

// TestAuditWrite: without a BackgroundAudits a write ends before AuditWrite
// returns; with one, AuditWrite returns while the write still runs (it
// waits for a release only the test gives after AuditWrite returned), and
// Wait returns only after the write has ended.
func TestAuditWrite(t *testing.T) {
	done := false
	AuditWrite(t.Context(), func() { done = true })
	if !done {
		t.Fatal("a write without BackgroundAudits had not ended when AuditWrite returned")
	}

	ctx, audits := WithBackgroundAudits(t.Context())
	release := make(chan struct{})
	var ended atomic.Bool
	AuditWrite(ctx, func() {
		<-release
		ended.Store(true)
	})
	close(release)
	audits.Wait()
	if !ended.Load() {
		t.Fatal("Wait returned before the write ended")
	}
}
