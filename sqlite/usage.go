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
