package sqlstore

import (
	"context"
	"time"

	"github.com/idflow/idflow"
)

// RecordUsage adds one call and its tokens to p's row of the day and model
// (Dialect.RecordUsage).
func (s *Store) RecordUsage(ctx context.Context, p idflow.Principal, model string, u idflow.Usage, at time.Time) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	if err := idflow.CheckUsage(model, u); err != nil {
		return err
	}
	now := s.clock.now()
	return s.write(ctx, "record usage", owner, func(tx Tx) error {
		_, err := tx.Exec(ctx, s.b.SQL.RecordUsage,
			owner, at.UTC().Format(idflow.DayFormat), model, p.TenantID, u.PromptTokens, u.CompletionTokens, now)
		return err
	})
}

// ListUsage answers p's usage from the day of from through the day of to
// (Dialect.ListUsage).
func (s *Store) ListUsage(ctx context.Context, p idflow.Principal, from, to time.Time) ([]idflow.UsageDay, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	first, last, err := idflow.UsageDays(from, to)
	if err != nil {
		return nil, err
	}
	var out []idflow.UsageDay
	err = s.read(ctx, "list usage", owner, func(tx Tx) error {
		out, err = collect(ctx, tx, s.b.SQL.ListUsage, func(r Row) (idflow.UsageDay, error) {
			var d idflow.UsageDay
			err := r.Scan(&d.UserID, &d.Day, &d.Model, &d.PromptTokens, &d.CompletionTokens, &d.Calls)
			return d, err
		}, owner, first, last)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AdminListUsage answers the admin scope's usage (idflow.UsageStore):
// Dialect.AdminUsage with ($1 the user, or empty for every user's totals,
// $2 first day, $3 last day, $4 every tenant, $5 the tenant), answering
// (the user or empty, tenant, day, model, tokens, calls, users).
func (s *Store) AdminListUsage(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope, userID string, from, to time.Time) ([]idflow.UsageDay, error) {
	if _, _, err := scope.For(admin); err != nil {
		return nil, err
	}
	first, last, err := idflow.UsageDays(from, to)
	if err != nil {
		return nil, err
	}
	var out []idflow.UsageDay
	err = s.admin(ctx, "admin list usage", admin, scope, func(tx Tx, tenant string, all bool) error {
		out, err = collect(ctx, tx, s.b.SQL.AdminUsage, func(r Row) (idflow.UsageDay, error) {
			var d idflow.UsageDay
			err := r.Scan(&d.UserID, &d.TenantID, &d.Day, &d.Model, &d.PromptTokens, &d.CompletionTokens, &d.Calls, &d.Users)
			if userID != "" {
				d.Users = 0
			}
			return d, err
		}, userID, first, last, all, tenant)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
