package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idflow/idflow/httpapi"
	"github.com/idflow/idflow/ratelimit"
)

// limitReasons are the reasons idflow_limits_hit_total counts; any other
// is counted as "other", so a label value never comes from data.
var limitReasons = []string{httpapi.LimitRate, httpapi.LimitTurns, httpapi.LimitStreams, httpapi.LimitIngestBytes,
	ReasonBudgetUserDay, ReasonBudgetUserMonth, ReasonBudgetTenantDay, ReasonBudgetTenantMonth}

// Reasons of a model call refused by a token budget (package budget names
// the same).
const (
	ReasonBudgetUserDay     = "budget_user_day"
	ReasonBudgetUserMonth   = "budget_user_month"
	ReasonBudgetTenantDay   = "budget_tenant_day"
	ReasonBudgetTenantMonth = "budget_tenant_month"
)

// LimitsHit registers idflow_limits_hit_total and returns its observer:
// requests or model calls a limit refused, by route class and reason,
// never by user.
func (m *Metrics) LimitsHit() (func(class, reason string), error) {
	hits := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "limits_hit_total",
		Help: "Requests and model calls refused by a fair-use limit, by route class and reason (docs/LIMITS.md)."},
		[]string{"class", "reason"})
	if err := m.reg.Register(hits); err != nil {
		return nil, err
	}
	classes := []string{"model"}
	for _, c := range ratelimit.Classes() {
		classes = append(classes, c.String())
	}
	return func(class, reason string) {
		if !slices.Contains(classes, class) {
			class = "other"
		}
		if !slices.Contains(limitReasons, reason) {
			reason = "other"
		}
		hits.WithLabelValues(class, reason).Inc()
	}, nil
}
