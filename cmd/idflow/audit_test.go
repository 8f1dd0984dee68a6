package main

import (
	"net/http"
	"testing"
)

// TestAuditChainVerifies: after writes and denials by users of two
// tenants, each admin's verification finds the chain intact and recomputes
// the hashes of its own tenant's events only (the platform admin's: every
// event); nobody else may run it, and each run is audited with its reach.
func TestAuditChainVerifies(t *testing.T) {
	s := startProdIdflow(t, nil)
	appID := s.create(t, callerAlice, "/api/v1/apps", map[string]string{"name": "a"})
	s.create(t, callerBob, "/api/v1/facts", map[string]string{"content": "bob's fact"})
	mustStatus(t, s.As(t, callerBob, "GET", "/api/v1/apps/"+appID, nil), http.StatusNotFound)   // a denial, audited
	mustStatus(t, s.As(t, callerCarol, "GET", "/api/v1/apps/"+appID, nil), http.StatusNotFound) // in t-two

	type verification struct {
		OK         bool   `json:"ok"`
		Checked    int    `json:"checked"`
		AllTenants bool   `json:"all_tenants"`
		Error      string `json:"error"`
	}
	for _, who := range []string{callerAdmin, callerAdmin2, callerRoot} {
		// The events the admin may read; reading them adds one (audited).
		seen := len(s.auditEvents(t, who, "/api/v1/admin/audit")) + 1
		var out verification
		r := s.As(t, who, "GET", "/api/v1/admin/audit/verify", nil)
		mustStatus(t, r, http.StatusOK)
		r.JSON(t, &out)
		if !out.OK || out.Checked != seen || out.AllTenants != (who == callerRoot) || out.Error != "" {
			t.Fatalf("verify as %s = %+v; want ok over the %d events of its scope (all tenants: %v)", who, out, seen, who == callerRoot)
		}
		action := "admin.audit.verify"
		if who == callerRoot {
			action = "platform_admin.audit.verify"
		}
		found := false
		for _, e := range s.auditEvents(t, who, "/api/v1/audit") {
			found = found || e.Action == action && e.Outcome == "success"
		}
		if !found {
			t.Errorf("verify as %s: no %s event in its own audit", who, action)
		}
	}
	for _, who := range []string{callerAlice, callerBob, callerApp} {
		mustStatus(t, s.As(t, who, "GET", "/api/v1/admin/audit/verify", nil), http.StatusForbidden)
	}
}
