package service

import (
	"context"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/budget"
)

// Budgets are the model token budgets (nil: none).
func (s *Service) Budgets() *budget.Budgets { return s.budgets }

// checkBudget refuses a turn, before it begins, when p's budgets cannot
// take its message: so a turn that would pass a budget is refused (429)
// before any model call, streamed or not.
func (s *Service) checkBudget(ctx context.Context, p idflow.Principal, content string) error {
	if s.budgets == nil {
		return nil
	}
	return s.budgets.Check(ctx, p, budget.EstimateText(content))
}

// BudgetStatus answers p's own budgets and spend (nil without budgets).
func (s *Service) BudgetStatus(ctx context.Context, p idflow.Principal) (*budget.Status, error) {
	if s.budgets == nil {
		return nil, nil
	}
	st, err := s.budgets.StatusOf(ctx, p)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// adminTenant is the tenant an admin acts on: their own for a tenant
// admin (asking for another is refused as not found, like any object
// outside the scope); for a platform admin the one named, which is
// required.
func (s *Service) adminTenant(admin idflow.Principal, tenant string) (string, error) {
	scope, err := s.AdminScope(admin)
	if err != nil {
		return "", err
	}
	own, all, err := scope.For(admin)
	if err != nil {
		return "", err
	}
	switch {
	case all && tenant == "" && admin.TenantID == "":
		return "", idflow.Errorf(idflow.EINVALID, "tenant_id is required with the platform admin role")
	case all && tenant == "":
		return admin.TenantID, nil // their own, unless they name another
	case all:
		return tenant, nil
	case tenant != "" && tenant != own:
		return "", idflow.Errorf(idflow.ENOTFOUND, "no such tenant")
	}
	return own, nil
}

// AdminBudget answers the budgets and spend of the admin's tenant, and of
// one of its users when userID is set.
func (s *Service) AdminBudget(ctx context.Context, admin idflow.Principal, tenant, userID string) (budget.Status, error) {
	if s.budgets == nil {
		return budget.Status{}, idflow.Errorf(idflow.ENOTFOUND, "no model budgets are configured")
	}
	t, err := s.adminTenant(admin, tenant)
	if err != nil {
		s.Audit(ctx, admin, "budget.read", "tenant/"+tenant, err)
		return budget.Status{}, err
	}
	return s.budgets.TenantStatus(ctx, t, userID)
}

// ResetBudget sets the spend of the admin's tenant (userID empty), or of
// one of its users, back to zero for the day, the month or both; audited.
func (s *Service) ResetBudget(ctx context.Context, admin idflow.Principal, tenant, userID, period string) (budget.Status, error) {
	if s.budgets == nil {
		return budget.Status{}, idflow.Errorf(idflow.ENOTFOUND, "no model budgets are configured")
	}
	t, err := s.adminTenant(admin, tenant)
	resource := "tenant/" + t
	if userID != "" {
		resource += "/user/" + userID
	}
	if err == nil {
		err = s.budgets.Reset(ctx, t, userID, period)
	}
	s.auditDetail(ctx, admin, "budget.reset", resource, "period "+periodName(period), err)
	if err != nil {
		return budget.Status{}, err
	}
	return s.budgets.TenantStatus(ctx, t, userID)
}

func periodName(p string) string {
	if p == "" {
		return "day and month"
	}
	return p
}

// BudgetExhausted audits a model call (or a turn) that a budget refused,
// as a denial of p's: budget.Config.OnExhausted.
func (s *Service) BudgetExhausted(ctx context.Context, p idflow.Principal, reason, detail string) {
	info := idflow.RequestInfoFrom(ctx)
	_, err := s.store.RecordAudit(context.WithoutCancel(ctx), idflow.AuditEvent{
		UserID: p.UserID, TenantID: p.TenantID, Action: "model.budget", Resource: "budget/" + reason,
		Outcome: idflow.OutcomeDenied, RequestID: info.RequestID, Peer: info.Peer, Detail: detail,
	})
	if err != nil {
		s.log.ErrorContext(ctx, "audit write failed", "action", "model.budget", "err", err)
	}
}
