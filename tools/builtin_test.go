package tools

import (
	"context"
	"testing"

	"github.com/idflow/idflow"
)

// TestCompileRefusesBadSchemas: a built-in's schema with a typo would
// silently check nothing; it refuses to compile instead.
func TestCompileRefusesBadSchemas(t *testing.T) {
	run := func(context.Context, idflow.Principal, arguments) (any, error) { return nil, nil }
	for name, props := range map[string]map[string]any{
		"unknown type":    {"n": map[string]any{"type": "integr", "description": "n"}},
		"keyword typo":    {"n": map[string]any{"type": "string", "descripton": "n"}},
		"no description":  {"n": map[string]any{"type": "string"}},
		"bad pattern":     {"n": map[string]any{"type": "string", "description": "n", "pattern": "("}},
		"required absent": {},
	} {
		d := def{name: "t", desc: "t", props: props, run: run}
		if name == "required absent" {
			d.required = []string{"missing"}
		}
		if _, err := compile(d); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
	if _, err := compile(def{name: "t", desc: "t", props: map[string]any{"n": integer("n", 0, 1)}, run: run}); err != nil {
		t.Fatalf("a good schema: %v", err)
	}
}
