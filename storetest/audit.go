package storetest

import (
	"fmt"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
)

var hexHash = regexp.MustCompile(`^[0-9a-f]{64}$`)

func testAudit(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	if n, err := s.VerifyAuditChain(ctx, root, scopeOf(t, root)); err != nil || n != 0 {
		t.Fatalf("VerifyAuditChain of an empty log = %d, %v", n, err)
	}
	at := time.Date(2026, 11, 23, 10, 0, 0, 123456000, time.UTC)
	in := []idflow.AuditEvent{
		{UserID: alice.UserID, TenantID: alice.TenantID, Action: "app.create", Resource: "app_x", Outcome: idflow.OutcomeSuccess,
			RequestID: "req-1", Peer: "127.0.0.1:5000", Detail: "created"},
		{Action: "auth.spoof", Resource: "GET /api/v1/me", Outcome: idflow.OutcomeDenied, Peer: "10.0.0.9:1", At: at},
		{UserID: bob.UserID, TenantID: bob.TenantID, Action: "app.get", Resource: "app_x", Outcome: idflow.OutcomeDenied,
			Detail: "not yours \"quoted\"\nnewline"},
	}
	var got []idflow.AuditEvent
	for _, e := range in {
		got = append(got, must(s.RecordAudit(ctx, e))(t))
	}
	for i, e := range got {
		checkNew(t, "audit event", e.ID, idflow.PrefixAudit, e.UserID, in[i].UserID)
		if e.Action != in[i].Action || e.Detail != in[i].Detail || e.Peer != in[i].Peer || e.At.IsZero() {
			t.Fatalf("event %d = %+v", i, e)
		}
		if !hexHash.MatchString(e.Hash) {
			t.Fatalf("event %d hash %q is not hex SHA-256", i, e.Hash)
		}
		if i > 0 && (e.Seq <= got[i-1].Seq || e.PrevHash != got[i-1].Hash) {
			t.Fatalf("event %d (seq %d, prev %s) does not follow event %d (seq %d, hash %s)",
				i, e.Seq, e.PrevHash, i-1, got[i-1].Seq, got[i-1].Hash)
		}
	}
	if !got[1].At.Equal(at) {
		t.Fatalf("a given At was changed: %v, want %v", got[1].At, at)
	}
	if got[0].Hash == got[2].Hash {
		t.Fatal("two events share a hash")
	}
	if n, err := s.VerifyAuditChain(ctx, root, scopeOf(t, root)); err != nil || n != 3 {
		t.Fatalf("VerifyAuditChain = %d, %v; want 3, nil", n, err)
	}

	// The caller sees their own events, newest first; the platform admin
	// sees all (AdminAcrossTenants has the tenant admins).
	mine := must(s.ListAudit(ctx, alice, idflow.Page{}))(t)
	sameJSON(t, mine.Items, []idflow.AuditEvent{got[0]})
	every := must(s.AdminListAudit(ctx, root, scopeOf(t, root), idflow.Page{}))(t)
	sameJSON(t, every.Items, []idflow.AuditEvent{got[2], got[1], got[0]})

	// Concurrent appends still form one chain.
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				_, err := s.RecordAudit(ctx, idflow.AuditEvent{UserID: carol.UserID, Action: fmt.Sprintf("w%d.%d", w, i),
					Outcome: idflow.OutcomeSuccess})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent RecordAudit: %v", err)
	}
	if n, err := s.VerifyAuditChain(ctx, root, scopeOf(t, root)); err != nil || n != 3+workers*each {
		t.Fatalf("VerifyAuditChain after concurrent appends = %d, %v; want %d", n, err, 3+workers*each)
	}
	carols := must(s.ListAudit(ctx, carol, idflow.Page{Limit: idflow.MaxPageLimit}))(t)
	if len(carols.Items) != workers*each {
		t.Fatalf("carol has %d events, want %d", len(carols.Items), workers*each)
	}
	seqs := make([]int64, 0, len(carols.Items))
	for _, e := range carols.Items {
		seqs = append(seqs, e.Seq)
	}
	if !slices.IsSortedFunc(seqs, func(a, b int64) int { return int(b - a) }) || len(slices.Compact(seqs)) != len(seqs) {
		t.Fatalf("carol's events are not in strictly decreasing seq order: %v", seqs)
	}

	_, err := s.ListAudit(ctx, svc, idflow.Page{})
	wantCode(t, err, idflow.EFORBIDDEN)
}
