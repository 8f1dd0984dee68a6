package httpapi

import (
	"net/http"

	"github.com/idflow/idflow"
)

// auditDenial records a refused request. p is nil when nobody was
// authenticated.
func (s *Server) auditDenial(r *http.Request, p *idflow.Principal, action, reason string) {
	var userID, tenantID string
	if p != nil {
		userID, tenantID = p.UserID, p.TenantID
	}
	s.log.WarnContext(r.Context(), "denied", "action", action, "reason", reason,
		"user_id", userID, "path", r.URL.Path, "peer", r.RemoteAddr, "request_id", requestID(r.Context()))
	if s.store == nil {
		return
	}
	_, err := s.store.RecordAudit(r.Context(), idflow.AuditEvent{
		UserID: userID, TenantID: tenantID, Action: action, Resource: r.Method + " " + r.URL.Path,
		Outcome: idflow.OutcomeDenied, RequestID: requestID(r.Context()), Peer: r.RemoteAddr, Detail: reason,
	})
	if err != nil {
		s.log.ErrorContext(r.Context(), "audit write failed", "err", err)
	}
}
