package authz_test

import (
	"strings"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/authz"
)

// TestToolFeatureAndItsAlias: tool.<name> gates a tool; mcp.tool.<name>,
// its older name, gates it just the same; with rules under both names,
// both must open it.
func TestToolFeatureAndItsAlias(t *testing.T) {
	pol, err := authz.Parse([]byte(`{"features": {
		"tool.add_fact": {"roles": ["writer"]},
		"mcp.tool.send_message": {"roles": ["sales"]},
		"tool.get_run": {"roles": ["ops"]}, "mcp.tool.get_run": {"roles": ["admin"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	plain := authtest.User("alice", "t-one")
	writer := authtest.User("wendy", "t-one", "writer")
	seller := authtest.User("sam", "t-one", "sales")
	ops := authtest.User("olga", "t-one", "ops")
	both := authtest.User("boris", "t-one", "ops", "admin")
	for _, c := range []struct {
		p       idflow.Principal
		tool    string
		allowed bool
		feature string // named by the refusal
	}{
		{plain, "whoami", true, ""},
		{plain, "add_fact", false, "tool.add_fact"},
		{writer, "add_fact", true, ""},
		{plain, "send_message", false, "mcp.tool.send_message"},
		{seller, "send_message", true, ""},
		{writer, "send_message", false, "mcp.tool.send_message"},
		{ops, "get_run", false, "mcp.tool.get_run"},
		{both, "get_run", true, ""},
	} {
		err := pol.CheckTool(c.p, c.tool)
		if pol.ToolAllowed(c.p, c.tool) != c.allowed || (err == nil) != c.allowed {
			t.Errorf("%s (%v) using %s: allowed %v, %v; want %v", c.p.UserID, c.p.Roles, c.tool, pol.ToolAllowed(c.p, c.tool), err, c.allowed)
			continue
		}
		if !c.allowed && (idflow.ErrorCode(err) != idflow.EFORBIDDEN || !strings.HasSuffix(idflow.ErrorMessage(err), " "+c.feature)) {
			t.Errorf("%s using %s: refused with %v; want forbidden naming %s", c.p.UserID, c.tool, err, c.feature)
		}
	}
	if authz.ToolFeature("x") != "tool.x" || authz.MCPToolFeature("x") != "mcp.tool.x" {
		t.Fatal("the feature names changed")
	}
}
