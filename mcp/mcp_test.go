package mcp

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestIdentityArgumentsAreRecognised(t *testing.T) {
	a, err := parseArguments(json.RawMessage(`{"content":"x","user_id":"b","userId":"b","Owner":"b","on-behalf-of":"b","as":"b","tenant_id":"t","query":"q","session_id":"s","run_id":"r","workflow_id":"w"}`))
	if err != nil {
		t.Fatal(err)
	}
	got := a.identityKeys()
	want := []string{"Owner", "as", "on-behalf-of", "tenant_id", "userId", "user_id"}
	if !slices.Equal(got, want) {
		t.Fatalf("identityKeys = %v; want %v (and no tool argument)", got, want)
	}
}

func TestArgumentTypes(t *testing.T) {
	a, err := parseArguments(json.RawMessage(`{"s":"v","n":3,"f":2.5,"bad":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := a.str("s", true); err != nil || v != "v" {
		t.Fatalf("str(s) = %q, %v", v, err)
	}
	if _, err := a.str("missing", true); err == nil {
		t.Fatal("a missing required string was accepted")
	}
	if _, err := a.str("bad", false); err == nil {
		t.Fatal("a number was accepted as a string")
	}
	if v, err := a.integer("n", 0, 10); err != nil || v != 3 {
		t.Fatalf("integer(n) = %d, %v", v, err)
	}
	for _, c := range []struct {
		name     string
		min, max int
	}{{"f", 0, 10}, {"n", 0, 2}, {"s", 0, 10}} {
		if _, err := a.integer(c.name, c.min, c.max); err == nil {
			t.Fatalf("integer(%s) within %d..%d was accepted", c.name, c.min, c.max)
		}
	}
	if _, err := parseArguments(json.RawMessage(`[1]`)); err == nil {
		t.Fatal("an array was accepted as arguments")
	}
}

func TestCalledTools(t *testing.T) {
	for _, c := range []struct {
		body string
		want []string
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_fact","arguments":{}}}`, []string{"add_fact"}},
		{`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami"}}]`, []string{"whoami"}},
		{`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`, nil},
		{`not json`, nil},
	} {
		if got := calledTools([]byte(c.body)); !slices.Equal(got, c.want) {
			t.Errorf("calledTools(%s) = %v; want %v", c.body, got, c.want)
		}
	}
}

func TestSessionOwnersSweep(t *testing.T) {
	o := newSessionOwners()
	o.add("a", "alice", nil)
	o.add("b", "bob", nil)
	o.sweep(func() map[string]bool {
		o.add("c", "carol", nil) // opened while the sweep looks: kept
		return map[string]bool{"b": true}
	})
	if _, ok := o.owner("a"); ok {
		t.Fatal("a closed session survived the sweep")
	}
	for id, want := range map[string]string{"b": "bob", "c": "carol"} {
		if owner, ok := o.owner(id); !ok || owner != want {
			t.Fatalf("session %s: owner %q %v after the sweep; want %q", id, owner, ok, want)
		}
	}
	if o.len() != 2 {
		t.Fatalf("%d sessions after the sweep; want 2", o.len())
	}
}
