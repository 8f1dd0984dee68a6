package httpapi

import (
	"context"
	"net/http"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/budget"
	"github.com/idflow/idflow/service"
)

// budgetReader answers a caller's own budgets (nil status: none configured).
type budgetReader interface {
	BudgetStatus(ctx context.Context, p idflow.Principal) (*budget.Status, error)
}

// budgetsOf is svc as a budgetReader; a nil service is a nil interface.
func budgetsOf(svc *service.Service) budgetReader {
	if svc == nil {
		return nil
	}
	return svc
}

// handleAdminBudget answers the budgets and spend of the admin's tenant
// (?tenant_id= for a platform admin), and of one of its users with ?user_id=.
func handleAdminBudget(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		tenant, user, err := budgetParams(r)
		if err != nil {
			return err
		}
		st, err := svc.AdminBudget(r.Context(), p, tenant, user)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, st)
	}
}

// maxBudgetParam bounds ?user_id= and ?tenant_id= of the budget routes.
const maxBudgetParam = 256

// budgetParams reads ?tenant_id= (platform admin only) and ?user_id=.
func budgetParams(r *http.Request) (tenant, user string, err error) {
	q := r.URL.Query()
	tenant, user = q.Get("tenant_id"), q.Get("user_id")
	if len(tenant) > maxBudgetParam || len(user) > maxBudgetParam {
		return "", "", idflow.Errorf(idflow.EINVALID, "tenant_id and user_id are at most %d bytes", maxBudgetParam)
	}
	return tenant, user, nil
}

// handleResetBudget resets the spend of the admin's tenant, or of one of
// its users (?user_id=), for ?period= day, month, or both when absent, and
// answers the budgets after it. The parameters are in the query, as the
// GET's: a body's user_id is a read-only field (decode.go).
func handleResetBudget(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		tenant, user, err := budgetParams(r)
		if err != nil {
			return err
		}
		st, err := svc.ResetBudget(r.Context(), p, tenant, user, r.URL.Query().Get("period"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, st)
	}
}
