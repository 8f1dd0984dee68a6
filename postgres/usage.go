package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

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
	now := db.now()
	return db.asUser(ctx, "record usage", owner, readWrite, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO model_usage
				(user_id, day, model, tenant_id, prompt_tokens, completion_tokens, calls, updated_at)
			VALUES ($1, $2::date, $3, $4, $5, $6, 1, $7)
			ON CONFLICT (user_id, day, model) DO UPDATE SET
				prompt_tokens = model_usage.prompt_tokens + excluded.prompt_tokens,
				completion_tokens = model_usage.completion_tokens + excluded.completion_tokens,
				calls = model_usage.calls + 1, tenant_id = excluded.tenant_id, updated_at = excluded.updated_at`,
			owner, at.UTC().Format(idflow.DayFormat), model, p.TenantID, u.PromptTokens, u.CompletionTokens, now)
		return err
	})
}

// listUsageSQL reads one user's rows of a range of days, in primary-key order.
const listUsageSQL = `SELECT user_id, to_char(day, 'YYYY-MM-DD'), model, prompt_tokens, completion_tokens, calls
	FROM model_usage WHERE user_id = $1 AND day >= $2::date AND day <= $3::date ORDER BY day, model`

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
	out := []idflow.UsageDay{}
	err = db.asUser(ctx, "list usage", owner, readOnly, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, listUsageSQL, owner, first, last)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (idflow.UsageDay, error) {
			var d idflow.UsageDay
			err := r.Scan(&d.UserID, &d.Day, &d.Model, &d.PromptTokens, &d.CompletionTokens, &d.Calls)
			return d, err
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []idflow.UsageDay{}
	}
	return out, nil
}

// adminUsageSQL answers the scope's usage: tenant ($5, unless $4) and one
// user ($1) or every user's totals. The admin_read policy of model_usage
// holds the tenant a second time.
const adminUsageSQL = `SELECT CASE WHEN $1 = '' THEN '' ELSE min(user_id) END, tenant_id, to_char(day, 'YYYY-MM-DD'), model,
		sum(prompt_tokens)::bigint, sum(completion_tokens)::bigint, sum(calls)::bigint, count(DISTINCT user_id)
	FROM model_usage
	WHERE day >= $2::date AND day <= $3::date AND ($4 OR tenant_id = $5) AND ($1 = '' OR user_id = $1)
	GROUP BY tenant_id, day, model ORDER BY day, tenant_id, model`

// AdminListUsage answers the admin scope's usage (idflow.UsageStore).
func (db *DB) AdminListUsage(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope, userID string, from, to time.Time) ([]idflow.UsageDay, error) {
	first, last, err := idflow.UsageDays(from, to)
	if err != nil {
		return nil, err
	}
	out := []idflow.UsageDay{}
	err = db.asAdmin(ctx, "admin list usage", admin, scope, func(tx pgx.Tx, tenant string, all bool) error {
		rows, err := tx.Query(ctx, adminUsageSQL, userID, first, last, all, tenant)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (idflow.UsageDay, error) {
			var d idflow.UsageDay
			err := r.Scan(&d.UserID, &d.TenantID, &d.Day, &d.Model, &d.PromptTokens, &d.CompletionTokens, &d.Calls, &d.Users)
			if userID != "" {
				d.Users = 0
			}
			return d, err
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []idflow.UsageDay{}
	}
	return out, nil
}
