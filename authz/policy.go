// Package authz decides what a verified Principal may do beyond owning its
// data: group- and role-gated features (a tool or server open only to some groups), read from a policy file.
package authz

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/idflow/idflow"
)

// Rule opens a feature to members of any listed group or holders of any
// listed role.
type Rule struct {
	Groups []string `json:"groups"`
	Roles  []string `json:"roles"`
}

// Policy maps feature names (e.g. "etl.ingest", "tool.send_message") to
// rules. A feature without a rule is open to every user; a feature with a
// rule is closed to everyone it does not name.
type Policy struct {
	Features map[string]Rule `json:"features"`

	// UserBudgets override IDFLOW_MODEL_BUDGET's per-user token budgets
	// for members of the groups or holders of the roles they name;
	// TenantBudgets the per-tenant ones, by tenant id (docs/LIMITS.md).
	UserBudgets   []BudgetRule            `json:"user_budgets,omitempty"`
	TenantBudgets map[string]BudgetPeriod `json:"tenant_budgets,omitempty"`
}

// BudgetPeriod is a token budget per day and per month: 0 keeps the
// configured one, -1 lifts it, more sets it.
type BudgetPeriod struct {
	Day   int64 `json:"day"`
	Month int64 `json:"month"`
}

// BudgetRule gives a BudgetPeriod to members of any listed group or
// holders of any listed role.
type BudgetRule struct {
	Groups []string `json:"groups"`
	Roles  []string `json:"roles"`
	BudgetPeriod
}

// UserBudget is the per-user budget override for p: of every rule that
// names p's groups or roles, the most generous per period (-1, none,
// beats any number). ok is false when no rule names p.
func (pol *Policy) UserBudget(p idflow.Principal) (BudgetPeriod, bool) {
	var out BudgetPeriod
	ok := false
	for _, r := range pol.UserBudgets {
		if !(Rule{Groups: r.Groups, Roles: r.Roles}).admits(p) {
			continue
		}
		ok = true
		out.Day, out.Month = generous(out.Day, r.Day), generous(out.Month, r.Month)
	}
	return out, ok
}

func generous(a, b int64) int64 {
	if a < 0 || b < 0 {
		return -1
	}
	return max(a, b)
}

// TenantBudget is the per-tenant budget override of tenant.
func (pol *Policy) TenantBudget(tenant string) (BudgetPeriod, bool) {
	b, ok := pol.TenantBudgets[tenant]
	return b, ok
}

// admits reports whether p is in one of r's groups or holds one of its roles.
func (r Rule) admits(p idflow.Principal) bool {
	for _, g := range r.Groups {
		if slices.Contains(p.Groups, g) {
			return true
		}
	}
	for _, role := range r.Roles {
		if slices.Contains(p.Roles, role) {
			return true
		}
	}
	return false
}

// Load reads a policy file; an empty path is the open policy.
func Load(path string) (*Policy, error) {
	if path == "" {
		return &Policy{Features: map[string]Rule{}}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return Parse(b)
}

// Parse parses a policy document, refusing unknown fields so that a typo
// cannot silently open a feature.
func Parse(b []byte) (*Policy, error) {
	var p Policy
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if p.Features == nil {
		p.Features = map[string]Rule{}
	}
	for _, r := range p.UserBudgets {
		if len(r.Groups)+len(r.Roles) == 0 {
			return nil, fmt.Errorf("policy: a user_budgets rule names no group or role")
		}
		if r.Day < -1 || r.Month < -1 {
			return nil, fmt.Errorf("policy: a user_budgets rule's day and month are -1 (none), 0 (the default) or a token count")
		}
	}
	for t, b := range p.TenantBudgets {
		if t == "" || b.Day < -1 || b.Month < -1 {
			return nil, fmt.Errorf("policy: tenant_budgets %q: day and month are -1 (none), 0 (the default) or a token count", t)
		}
	}
	return &p, nil
}

// Allowed reports whether p may use feature.
func (pol *Policy) Allowed(p idflow.Principal, feature string) bool {
	rule, ok := pol.Features[feature]
	if !ok {
		return true
	}
	return rule.admits(p)
}

// Check is Allowed as an error. When the token's groups overflowed (Entra
// group overage) a group-gated feature is refused with that reason: idflow
// reports the overage and never guesses the groups.
func (pol *Policy) Check(p idflow.Principal, feature string) error {
	if pol.Allowed(p, feature) {
		return nil
	}
	if p.GroupsOverage && len(pol.Features[feature].Groups) > 0 {
		return idflow.Errorf(idflow.EFORBIDDEN, "%s needs group membership, but your token's groups overflowed (group overage); ask for a token with fewer groups or app roles", feature)
	}
	return idflow.Errorf(idflow.EFORBIDDEN, "your groups and roles do not open %s", feature)
}

// ToolFeature is the feature that gates the tool name on every channel
// (agent turns, workflow steps, /mcp).
func ToolFeature(name string) string { return "tool." + name }

// MCPToolFeature is the older name of ToolFeature, from when only /mcp had
// tools. It stays an alias: a rule under either name gates the tool on
// every channel.
func MCPToolFeature(name string) string { return "mcp.tool." + name }

// ToolAllowed reports whether p may use the tool name: every rule that
// names it, under tool.<name> or its alias mcp.tool.<name>, must open it.
func (pol *Policy) ToolAllowed(p idflow.Principal, name string) bool {
	return pol.CheckTool(p, name) == nil
}

// CheckTool is ToolAllowed as an error naming the feature (as the policy
// file spells it) that closed the tool. With rules under both names, both
// must open it: a file gating a tool twice never opens it by accident.
func (pol *Policy) CheckTool(p idflow.Principal, name string) error {
	for _, feature := range []string{ToolFeature(name), MCPToolFeature(name)} {
		if err := pol.Check(p, feature); err != nil {
			return err
		}
	}
	return nil
}
