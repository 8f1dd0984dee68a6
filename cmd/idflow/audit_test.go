package main

import (
	"net/http"
	"testing"
)

// TestAuditChainVerifies: after writes and denials by several users, the
// admin's verification recomputes every hash and finds the chain intact;
// nobody else may run it.
func TestAuditChainVerifies(t *testing.T) {
	s := startProdIdflow(t, nil)
	appID := s.create(t, callerAlice, "/api/v1/apps", map[string]string{"name": "a"})
	s.create(t, callerBob, "/api/v1/facts", map[string]string{"content": "bob's fact"})
	mustStatus(t, s.As(t, callerBob, "GET", "/api/v1/apps/"+appID, nil), http.StatusNotFound) // a denial, audited

	var out struct {
		OK      bool   `json:"ok"`
		Checked int    `json:"checked"`
		Error   string `json:"error"`
	}
	r := s.As(t, callerAdmin, "GET", "/api/v1/admin/audit/verify", nil)
	mustStatus(t, r, http.StatusOK)
	r.JSON(t, &out)
	if !out.OK || out.Checked < 3 {
		t.Fatalf("verify = %+v, want ok with at least the 3 events above", out)
	}
	for _, who := range []string{callerAlice, callerBob, callerApp} {
		mustStatus(t, s.As(t, who, "GET", "/api/v1/admin/audit/verify", nil), http.StatusForbidden)
	}
}
