package idflow

import (
	"context"
	"time"
)

// Usage is the token count a model reported for one call.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
}

// DayFormat is how a usage day is written: a calendar day in UTC.
const DayFormat = "2006-01-02"

// MaxUsageModelLen bounds a model name in the usage store.
const MaxUsageModelLen = 200

// UsageDay is one user's token usage of one model on one day (UTC): the sum
// over every model call made on their behalf.
type UsageDay struct {
	UserID           string `json:"user_id,omitempty"`   // empty in a tenant's totals
	TenantID         string `json:"tenant_id,omitempty"` // only in an admin's answer
	Day              string `json:"day"`                 // DayFormat
	Model            string `json:"model"`
	PromptTokens     int64  `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
	Calls            int64  `json:"calls"`
	Users            int64  `json:"users,omitempty"` // a tenant's totals: how many users made the calls
}

// UsageStore keeps token usage per user, day and model.
type UsageStore interface {
	// RecordUsage adds one call of model, and its tokens, to p's usage on
	// the day (UTC) of at.
	RecordUsage(ctx context.Context, p Principal, model string, u Usage, at time.Time) error
	// ListUsage answers p's usage on the days from through to (UTC, both
	// included), by day then model.
	ListUsage(ctx context.Context, p Principal, from, to time.Time) ([]UsageDay, error)
	// AdminListUsage answers, for the admin's scope, the totals of every
	// user by tenant, day and model (userID empty: UserID empty, Users
	// counted), or one user's rows (userID set; a user outside the scope
	// answers none).
	AdminListUsage(ctx context.Context, admin Principal, scope AdminScope, userID string, from, to time.Time) ([]UsageDay, error)
}

// CheckUsage refuses what no store keeps: no model, a model name over
// MaxUsageModelLen, negative token counts.
func CheckUsage(model string, u Usage) error {
	switch {
	case model == "":
		return Errorf(EINVALID, "usage needs a model name")
	case len(model) > MaxUsageModelLen:
		return Errorf(EINVALID, "model name is longer than %d bytes", MaxUsageModelLen)
	case u.PromptTokens < 0 || u.CompletionTokens < 0:
		return Errorf(EINVALID, "token counts cannot be negative")
	}
	return nil
}

// UsageDays answers the UTC days of from and to, refusing to before from.
func UsageDays(from, to time.Time) (string, string, error) {
	f, t := from.UTC().Format(DayFormat), to.UTC().Format(DayFormat)
	if t < f {
		return "", "", Errorf(EINVALID, "the usage range ends (%s) before it starts (%s)", t, f)
	}
	return f, t, nil
}
