// Package budget holds model token budgets: per user and per tenant, per
// day and per month (UTC). Before a model call the call's estimated tokens
// are reserved against every budget that applies, all or nothing; a call
// that would pass one is refused (429) before the model is called; after
// it, the reservation is settled to the tokens the model reported (or
// released, when the call failed).
//
// Spend is kept in a Counter: Memory in this process, or Redis (package
// redis) so that every replica draws on the same budget. Counters are
// named by period (the day or the month), so a budget renews on its own at
// the period's boundary, on the injected clock.
package budget

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/authz"
)

// Limits are token budgets; 0 is no budget.
type Limits struct {
	UserDay, UserMonth, TenantDay, TenantMonth int64
}

// maxTokens bounds a budget (and so every counter's arithmetic).
const maxTokens = 1 << 50

// Parse reads IDFLOW_MODEL_BUDGET: comma-separated entries user.day=N,
// user.month=N, tenant.day=N, tenant.month=N, N being tokens with an
// optional k (thousand) or M (million) suffix, or off. An unknown or
// repeated entry is refused. Empty: no budgets.
func Parse(s string) (Limits, error) {
	var l Limits
	if len(s) > 512 {
		return l, fmt.Errorf("model budget: longer than 512 bytes")
	}
	if strings.TrimSpace(s) == "" {
		return l, nil
	}
	seen := map[string]bool{}
	for _, entry := range strings.Split(s, ",") {
		name, v, ok := strings.Cut(strings.TrimSpace(entry), "=")
		if !ok {
			return l, fmt.Errorf("model budget: %q is not name=tokens", entry)
		}
		var dst *int64
		switch name {
		case "user.day":
			dst = &l.UserDay
		case "user.month":
			dst = &l.UserMonth
		case "tenant.day":
			dst = &l.TenantDay
		case "tenant.month":
			dst = &l.TenantMonth
		default:
			return l, fmt.Errorf("model budget: unknown %q (user.day, user.month, tenant.day, tenant.month)", name)
		}
		if seen[name] {
			return l, fmt.Errorf("model budget: %s is given twice", name)
		}
		seen[name] = true
		n, err := parseTokens(v)
		if err != nil {
			return l, fmt.Errorf("model budget: %s: %w", name, err)
		}
		*dst = n
	}
	return l, nil
}

func parseTokens(v string) (int64, error) {
	if v == "off" {
		return 0, nil
	}
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "k"):
		mult, v = 1_000, strings.TrimSuffix(v, "k")
	case strings.HasSuffix(v, "M"):
		mult, v = 1_000_000, strings.TrimSuffix(v, "M")
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || strings.HasPrefix(v, "+") || n > maxTokens/mult {
		return 0, fmt.Errorf("%q is not a token count from 1 to 2^50 (k and M suffixes allowed) or off", v)
	}
	return n * mult, nil
}

// String writes l as Parse reads it.
func (l Limits) String() string {
	var parts []string
	for _, e := range []struct {
		name string
		n    int64
	}{{"user.day", l.UserDay}, {"user.month", l.UserMonth}, {"tenant.day", l.TenantDay}, {"tenant.month", l.TenantMonth}} {
		if e.n > 0 {
			parts = append(parts, e.name+"="+strconv.FormatInt(e.n, 10))
		}
	}
	return strings.Join(parts, ",")
}

// Key is one counter and the budget it is held to.
type Key struct {
	Name  string        // unique per scope and period
	Limit int64         // 0: counted, not limited
	TTL   time.Duration // how long the counter must be kept from now: past its period's end

}

// Counter keeps token counts by key.
type Counter interface {
	// Reserve adds n to every key, unless that would take one past its
	// limit: then it adds nothing and answers that key's index. -1: added.
	Reserve(ctx context.Context, keys []Key, n int64) (int, error)
	// Add adds n (negative: takes away) to every key.
	Add(ctx context.Context, keys []Key, n int64) error
	// Get answers the counts of keys (0 for a key never counted).
	Get(ctx context.Context, keys []Key) ([]int64, error)
	// Reset sets the counts of keys to 0.
	Reset(ctx context.Context, keys []Key) error
}

// Which budget: the order of the keys of a call.
const (
	UserDay = iota
	UserMonth
	TenantDay
	TenantMonth
	numBudgets
)

// Reasons, as the limits metric counts them.
var reasons = [numBudgets]string{"budget_user_day", "budget_user_month", "budget_tenant_day", "budget_tenant_month"}

var budgetWords = [numBudgets]string{"your daily", "your monthly", "your organization's daily", "your organization's monthly"}

// Config configures Budgets.
type Config struct {
	Limits  Limits
	Policy  *authz.Policy    // per-group and per-tenant overrides; nil: none
	Counter Counter          // nil: a Memory counter
	Now     func() time.Time // nil: time.Now
	// CompletionReserve is the tokens reserved for an answer before it
	// is known (default 1024); the settlement corrects it.
	CompletionReserve int64
	// OnExhausted hears of every call refused, with the reason (a
	// budget_… metric reason) — for the audit trail and the metric.
	OnExhausted func(ctx context.Context, p idflow.Principal, reason, detail string)
}

// Budgets applies token budgets to model calls.
type Budgets struct {
	cfg Config
}

// New returns Budgets over cfg.
func New(cfg Config) *Budgets {
	if cfg.Counter == nil {
		cfg.Counter = NewMemory(cfg.Now)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CompletionReserve <= 0 {
		cfg.CompletionReserve = 1024
	}
	return &Budgets{cfg: cfg}
}

// LimitsFor are the budgets that apply to p: the configured ones, with
// the policy file's overrides for p's groups and roles and p's tenant.
func (b *Budgets) LimitsFor(p idflow.Principal) Limits {
	l := b.cfg.Limits
	if b.cfg.Policy == nil {
		return l
	}
	if o, ok := b.cfg.Policy.UserBudget(p); ok {
		l.UserDay, l.UserMonth = override(l.UserDay, o.Day), override(l.UserMonth, o.Month)
	}
	if o, ok := b.cfg.Policy.TenantBudget(p.TenantID); ok {
		l.TenantDay, l.TenantMonth = override(l.TenantDay, o.Day), override(l.TenantMonth, o.Month)
	}
	return l
}

// override applies a policy value: 0 keeps the default, -1 lifts it.
func override(def, v int64) int64 {
	switch {
	case v < 0:
		return 0
	case v > 0:
		return v
	}
	return def
}

// periods are the day and month of now (UTC) and when each ends.
func periods(now time.Time) (day, month string, dayEnd, monthEnd time.Time) {
	now = now.UTC()
	d := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	m := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	return d.Format(idflow.DayFormat), m.Format("2006-01"), d.AddDate(0, 0, 1), m.AddDate(0, 1, 0)
}

// keys are the counters of the user userID of tenant at now, held to l.
// The user's counters are named under the tenant too, so that a tenant's
// admin reaches only the users of that tenant.
func keys(tenant, userID string, l Limits, now time.Time) []Key {
	day, month, dayEnd, monthEnd := periods(now)
	// A counter outlives its period by a day: replicas' clocks differ. The
	// TTL is relative, so a counter kept on another clock (Redis') expires
	// as long after its write as it should.
	const slack = 24 * time.Hour
	dayTTL, monthTTL := dayEnd.Sub(now)+slack, monthEnd.Sub(now)+slack
	return []Key{
		{Name: "u:" + tenant + ":" + userID + ":d:" + day, Limit: l.UserDay, TTL: dayTTL},
		{Name: "u:" + tenant + ":" + userID + ":m:" + month, Limit: l.UserMonth, TTL: monthTTL},
		{Name: "t:" + tenant + ":d:" + day, Limit: l.TenantDay, TTL: dayTTL},
		{Name: "t:" + tenant + ":m:" + month, Limit: l.TenantMonth, TTL: monthTTL},
	}
}

// Reservation is tokens held for one model call.
type Reservation struct {
	keys   []Key
	tokens int64
}

// Reserve holds estimate tokens (plus the completion reserve) for a model
// call of p's, or refuses it with ERATELIMIT naming the budget it would
// pass and when that renews.
func (b *Budgets) Reserve(ctx context.Context, p idflow.Principal, estimate int64) (*Reservation, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	now := b.cfg.Now()
	ks := keys(p.TenantID, owner, b.LimitsFor(p), now)
	n := max(0, estimate) + b.cfg.CompletionReserve
	i, err := b.cfg.Counter.Reserve(ctx, ks, n)
	if err != nil {
		return nil, idflow.WrapError(idflow.EUNAVAILABLE, "the model token budget cannot be checked now; try again shortly", err)
	}
	if i >= 0 {
		return nil, b.refuse(ctx, p, i, ks[i].Limit, now)
	}
	return &Reservation{keys: ks, tokens: n}, nil
}

// Check refuses, as Reserve would, when a budget of p's is already spent
// or would be by estimate tokens, without holding anything: a turn asks it
// before it begins, so that it is refused before any model call.
func (b *Budgets) Check(ctx context.Context, p idflow.Principal, estimate int64) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	now := b.cfg.Now()
	ks := keys(p.TenantID, owner, b.LimitsFor(p), now)
	used, err := b.cfg.Counter.Get(ctx, ks)
	if err != nil {
		return idflow.WrapError(idflow.EUNAVAILABLE, "the model token budget cannot be checked now; try again shortly", err)
	}
	n := max(0, estimate) + b.cfg.CompletionReserve
	for i, k := range ks {
		if k.Limit > 0 && used[i]+n > k.Limit {
			return b.refuse(ctx, p, i, k.Limit, now)
		}
	}
	return nil
}

func (b *Budgets) refuse(ctx context.Context, p idflow.Principal, which int, limit int64, now time.Time) error {
	_, _, dayEnd, monthEnd := periods(now)
	renews := dayEnd
	if which == UserMonth || which == TenantMonth {
		renews = monthEnd
	}
	detail := fmt.Sprintf("%s model token budget of %d tokens is spent (or this request would pass it); it renews at %s, or an admin can reset it",
		budgetWords[which], limit, renews.Format(time.RFC3339))
	if b.cfg.OnExhausted != nil {
		b.cfg.OnExhausted(ctx, p, reasons[which], detail)
	}
	return idflow.Errorf(idflow.ERATELIMIT, "%s", detail)
}

// Settle replaces the reservation's tokens by the tokens the call used
// (0: a failed call, which releases them).
func (b *Budgets) Settle(ctx context.Context, r *Reservation, used int64) error {
	if r == nil {
		return nil
	}
	if d := max(0, used) - r.tokens; d != 0 {
		return b.cfg.Counter.Add(ctx, r.keys, d)
	}
	return nil
}

// Period is one budget's state.
type Period struct {
	Used      int64     `json:"used"`
	Limit     int64     `json:"limit,omitempty"`     // absent: no budget
	Remaining *int64    `json:"remaining,omitempty"` // absent: no budget
	RenewsAt  time.Time `json:"renews_at"`
}

// Status is the budgets of a user and their tenant now.
type Status struct {
	UserID      string `json:"user_id,omitempty"`
	TenantID    string `json:"tenant_id"`
	Day         string `json:"day"`
	Month       string `json:"month"`
	UserDay     Period `json:"user_day"`
	UserMonth   Period `json:"user_month"`
	TenantDay   Period `json:"tenant_day"`
	TenantMonth Period `json:"tenant_month"`
}

// StatusOf answers the budgets of p (the user, and p's tenant).
func (b *Budgets) StatusOf(ctx context.Context, p idflow.Principal) (Status, error) {
	owner, err := p.Owner()
	if err != nil {
		return Status{}, err
	}
	return b.status(ctx, p.TenantID, owner, b.LimitsFor(p))
}

// TenantStatus answers the budgets of a tenant and, when userID is not
// empty, of that user of the tenant (an admin's view: the user's group
// overrides are not known here, so the configured user limits are shown).
func (b *Budgets) TenantStatus(ctx context.Context, tenant, userID string) (Status, error) {
	l := b.cfg.Limits
	if b.cfg.Policy != nil {
		if o, ok := b.cfg.Policy.TenantBudget(tenant); ok {
			l.TenantDay, l.TenantMonth = override(l.TenantDay, o.Day), override(l.TenantMonth, o.Month)
		}
	}
	return b.status(ctx, tenant, userID, l)
}

func (b *Budgets) status(ctx context.Context, tenant, userID string, l Limits) (Status, error) {
	now := b.cfg.Now()
	ks := keys(tenant, userID, l, now)
	used, err := b.cfg.Counter.Get(ctx, ks)
	if err != nil {
		return Status{}, idflow.WrapError(idflow.EUNAVAILABLE, "the model token budget cannot be read now", err)
	}
	day, month, dayEnd, monthEnd := periods(now)
	period := func(i int, renews time.Time) Period {
		p := Period{Used: max(0, used[i]), Limit: ks[i].Limit, RenewsAt: renews}
		if p.Limit > 0 {
			r := max(0, p.Limit-p.Used)
			p.Remaining = &r
		}
		return p
	}
	st := Status{UserID: userID, TenantID: tenant, Day: day, Month: month,
		TenantDay: period(TenantDay, dayEnd), TenantMonth: period(TenantMonth, monthEnd)}
	if userID != "" {
		st.UserDay, st.UserMonth = period(UserDay, dayEnd), period(UserMonth, monthEnd)
	}
	return st, nil
}

// Reset sets spend to zero now: the tenant's (userID empty) or one user's
// of the tenant, for the day, the month, or both (period "day", "month" or
// "").
func (b *Budgets) Reset(ctx context.Context, tenant, userID, period string) error {
	ks := keys(tenant, userID, Limits{}, b.cfg.Now())
	var pick []Key
	add := func(i int) {
		if period == "" || period == "day" && (i == UserDay || i == TenantDay) || period == "month" && (i == UserMonth || i == TenantMonth) {
			pick = append(pick, ks[i])
		}
	}
	if userID != "" {
		add(UserDay)
		add(UserMonth)
	} else {
		add(TenantDay)
		add(TenantMonth)
	}
	if len(pick) == 0 {
		return idflow.Errorf(idflow.EINVALID, "period must be day, month or empty (both)")
	}
	if err := b.cfg.Counter.Reset(ctx, pick); err != nil {
		return idflow.WrapError(idflow.EUNAVAILABLE, "the model token budget cannot be reset now", err)
	}
	return nil
}
