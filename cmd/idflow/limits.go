package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/authz"
	"github.com/idflow/idflow/budget"
	"github.com/idflow/idflow/metrics"
	"github.com/idflow/idflow/ratelimit"
	"github.com/idflow/idflow/redis"
)

// fairUse is what keeps one user from spending everyone's capacity
// (docs/LIMITS.md): the request rate limits (IDFLOW_RATE_LIMITS), the
// model token budgets (IDFLOW_MODEL_BUDGET and the policy file), and the
// metric of every limit hit. With IDFLOW_CACHE_URL on Redis the buckets
// and budget counters are there, so that they hold across replicas;
// otherwise in this process.
type fairUse struct {
	limiter *ratelimit.Limiter
	onLimit func(class, reason string)
	budgets *budget.Budgets // counts spend even with no budget set, for the admins' and users' view
	audit   func(ctx context.Context, p idflow.Principal, reason, detail string)
}

func newFairUse(cfg *config, m *metrics.Metrics, policy *authz.Policy, rc *redis.Client, log *slog.Logger) (*fairUse, error) {
	hit, err := m.LimitsHit()
	if err != nil {
		return nil, err
	}
	f := &fairUse{onLimit: hit}
	var store ratelimit.Store
	var counter budget.Counter
	if rc != nil {
		store, counter = redis.NewRateStore(rc), redis.NewBudgetCounter(rc)
	}
	f.limiter = ratelimit.New(cfg.rateLimits, store, storeFailures(log)).Pace(cfg.rateLimitWait, nil)
	f.budgets = budget.New(budget.Config{Limits: cfg.modelBudget, Policy: policy, Counter: counter,
		OnExhausted: func(ctx context.Context, p idflow.Principal, reason, detail string) {
			hit("model", reason)
			if f.audit != nil {
				f.audit(ctx, p, reason, detail)
			}
		}})
	return f, nil
}

// model is m held to the budgets (with none set, its spend is counted).
func (f *fairUse) model(m idflow.ChatModel) idflow.ChatModel {
	if f == nil || f.budgets == nil {
		return m
	}
	return budget.Model{Model: m, Budgets: f.budgets}
}

// storeFailures logs a failing rate-limit store at most once a minute:
// every request would otherwise log it.
func storeFailures(log *slog.Logger) func(error) {
	var last atomic.Int64
	return func(err error) {
		now := time.Now().Unix()
		if prev := last.Load(); now-prev >= 60 && last.CompareAndSwap(prev, now) {
			log.Warn("rate limits: the shared store failed; counting in this replica until it answers", "err", err)
		}
	}
}
