package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/budget"
	"github.com/idflow/idflow/service"
)

const (
	// usageDefaultDays is the range of GET /api/v1/usage without ?from=:
	// the last 30 days, today included.
	usageDefaultDays = 30
	// usageMaxDays bounds a range (and so the rows of an answer).
	usageMaxDays = 366
)

type usageOut struct {
	From  string            `json:"from"`
	To    string            `json:"to"`
	Items []idflow.UsageDay `json:"items"`
	// Budget is the caller's model token budgets, spend and what remains
	// now (absent when no budget is configured; handlers_budget.go).
	Budget *budget.Status `json:"budget,omitempty"`
}

// usageReader reads a caller's own usage (owner-scoped, like every store
// read).
type usageReader interface {
	ListUsage(ctx context.Context, p idflow.Principal, from, to time.Time) ([]idflow.UsageDay, error)
}

// handleUsage answers the caller's own token usage per day (UTC) and model,
// ?from= and ?to= being days (YYYY-MM-DD), both included.
func handleUsage(usage usageReader, budgets budgetReader) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		from, to, err := usageRange(r, time.Now())
		if err != nil {
			return err
		}
		items, err := usage.ListUsage(r.Context(), p, from, to)
		if err != nil {
			return err
		}
		out := usageOut{From: from.Format(idflow.DayFormat), To: to.Format(idflow.DayFormat), Items: items}
		if budgets != nil {
			if out.Budget, err = budgets.BudgetStatus(r.Context(), p); err != nil {
				return err
			}
		}
		return writeJSON(w, http.StatusOK, out)
	}
}

// usageRange reads ?from= and ?to= (defaults: the last usageDefaultDays
// days up to today, UTC), refusing a bad day, a reversed range and one
// longer than usageMaxDays.
func usageRange(r *http.Request, now time.Time) (time.Time, time.Time, error) {
	q := r.URL.Query()
	day := func(name string, def time.Time) (time.Time, error) {
		v := q.Get(name)
		if v == "" {
			return def, nil
		}
		d, err := time.Parse(idflow.DayFormat, v)
		if err != nil {
			return d, idflow.Errorf(idflow.EINVALID, "%s must be a day, YYYY-MM-DD", name)
		}
		return d, nil
	}
	now = now.UTC()
	to, err := day("to", time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC))
	if err != nil {
		return to, to, err
	}
	from, err := day("from", to.AddDate(0, 0, 1-usageDefaultDays))
	if err != nil {
		return from, to, err
	}
	switch {
	case to.Before(from):
		return from, to, idflow.Errorf(idflow.EINVALID, "to must not be before from")
	case to.Sub(from) >= usageMaxDays*24*time.Hour:
		return from, to, idflow.Errorf(idflow.EINVALID, "a usage range spans at most %d days", usageMaxDays)
	}
	return from, to, nil
}

// handleAdminUsage answers the usage of the admin's tenant (every tenant for
// the platform admin role): totals by day and model, or one user's with
// ?user_id=.
func handleAdminUsage(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		from, to, err := usageRange(r, time.Now())
		if err != nil {
			return err
		}
		items, err := svc.AdminListUsage(r.Context(), p, r.URL.Query().Get("user_id"), from, to)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, usageOut{From: from.Format(idflow.DayFormat), To: to.Format(idflow.DayFormat), Items: items})
	}
}
