package sqlite

import (
	"context"
	"time"

	"github.com/idflow/idflow"
)

// RecordUsage adds one call and its tokens to p's row of the day and model.
func (db *DB) RecordUsage(ctx context.Context, p idflow.Principal, model string, u idflow.Usage, at time.Time) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	if err := idflow.CheckUsage(model, u); err != nil {
		return err
	}
	_, err = db.w.ExecContext(ctx, `INSERT INTO model_usage
			(user_id, day, model, tenant_id, prompt_tokens, completion_tokens, calls, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, 1, ?)
		ON CONFLICT (user_id, day, model) DO UPDATE SET
			prompt_tokens = prompt_tokens + excluded.prompt_tokens,
			completion_tokens = completion_tokens + excluded.completion_tokens,
			calls = calls + 1, tenant_id = excluded.tenant_id, updated_at = excluded.updated_at`,
		owner, at.UTC().Format(idflow.DayFormat), model, p.TenantID, u.PromptTokens, u.CompletionTokens, nanos(db.now()))
	return fail("record usage", err)
}

// ListUsage answers p's usage from the day of from through the day of to.
func (db *DB) ListUsage(ctx context.Context, p idflow.Principal, from, to time.Time) ([]idflow.UsageDay, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	first, last, err := idflow.UsageDays(from, to)
	if err != nil {
		return nil, err
	}
	rows, err := db.r.QueryContext(ctx, `SELECT user_id, day, model, prompt_tokens, completion_tokens, calls
		FROM model_usage WHERE user_id = ? AND day >= ? AND day <= ? ORDER BY day, model`, owner, first, last)
	if err != nil {
		return nil, fail("list usage", err)
	}
	defer rows.Close()
	out := []idflow.UsageDay{}
	for rows.Next() {
		var d idflow.UsageDay
		if err := rows.Scan(&d.UserID, &d.Day, &d.Model, &d.PromptTokens, &d.CompletionTokens, &d.Calls); err != nil {
			return nil, fail("list usage", err)
		}
		out = append(out, d)
	}
	return out, fail("list usage", rows.Err())
}

// adminUsageSQL answers the scope's usage: tenant ($tenant, unless $all)
// and one user ($user) or every user's totals.
const adminUsageSQL = `SELECT CASE WHEN ?1 = '' THEN '' ELSE min(user_id) END, tenant_id, day, model,
		sum(prompt_tokens), sum(completion_tokens), sum(calls), count(DISTINCT user_id)
	FROM model_usage
	WHERE day >= ?2 AND day <= ?3 AND (?4 OR tenant_id = ?5) AND (?1 = '' OR user_id = ?1)
	GROUP BY tenant_id, day, model ORDER BY day, tenant_id, model`

// AdminListUsage answers the admin scope's usage (idflow.UsageStore).
func (db *DB) AdminListUsage(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope, userID string, from, to time.Time) ([]idflow.UsageDay, error) {
	tenant, all, err := scope.For(admin)
	if err != nil {
		return nil, err
	}
	first, last, err := idflow.UsageDays(from, to)
	if err != nil {
		return nil, err
	}
	rows, err := db.r.QueryContext(ctx, adminUsageSQL, userID, first, last, all, tenant)
	if err != nil {
		return nil, fail("admin list usage", err)
	}
	defer rows.Close()
	out := []idflow.UsageDay{}
	for rows.Next() {
		var d idflow.UsageDay
		if err := rows.Scan(&d.UserID, &d.TenantID, &d.Day, &d.Model, &d.PromptTokens, &d.CompletionTokens, &d.Calls, &d.Users); err != nil {
			return nil, fail("admin list usage", err)
		}
		if userID != "" {
			d.Users = 0
		}
		out = append(out, d)
	}
	return out, fail("admin list usage", rows.Err())
}
