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
	return &p, nil
}

// Allowed reports whether p may use feature.
func (pol *Policy) Allowed(p idflow.Principal, feature string) bool {
	rule, ok := pol.Features[feature]
	if !ok {
		return true
	}
	for _, g := range rule.Groups {
		if slices.Contains(p.Groups, g) {
			return true
		}
	}
	for _, r := range rule.Roles {
		if slices.Contains(p.Roles, r) {
			return true
		}
	}
	return false
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
