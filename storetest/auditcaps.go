package storetest

import (
	"strings"
	"testing"

	"github.com/idflow/idflow"
)

// testAuditCaps: the store bounds every field of an audit row itself
// (idflow.AuditEvent.Bounded), so no caller can grow a row without bound,
// and the chain still verifies over what was stored.
func testAuditCaps(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	junk := strings.Repeat("x", 1<<20)
	e := must(s.RecordAudit(ctx, idflow.AuditEvent{Action: "authenticate", Resource: "GET /" + junk,
		Outcome: idflow.OutcomeDenied, Peer: junk, Detail: "bad token \x00" + junk}))(t)
	want := idflow.AuditEvent{Action: "authenticate", Resource: "GET /" + junk,
		Outcome: idflow.OutcomeDenied, Peer: junk, Detail: "bad token \x00" + junk}.Bounded()
	if e.Resource != want.Resource || e.Peer != want.Peer || e.Detail != want.Detail {
		t.Fatalf("stored resource %d bytes, peer %d, detail %d; want %d, %d, %d", len(e.Resource), len(e.Peer), len(e.Detail),
			len(want.Resource), len(want.Peer), len(want.Detail))
	}
	if len(e.Detail) > 1024 || len(e.Resource) > 512 {
		t.Fatalf("fields not bounded: detail %d bytes, resource %d", len(e.Detail), len(e.Resource))
	}
	every := must(s.AdminListAudit(ctx, root, scopeOf(t, root), idflow.Page{}))(t)
	if len(every.Items) != 1 || every.Items[0].Detail != e.Detail || every.Items[0].Hash != e.Hash {
		t.Fatalf("read back %+v", every.Items)
	}
	if n, err := s.VerifyAuditChain(ctx, root, scopeOf(t, root)); err != nil || n != 1 {
		t.Fatalf("VerifyAuditChain = %d, %v", n, err)
	}
}
