package verify

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// scope is what a caller may legitimately see in an answer.
type scope int

const (
	scopeOwn     scope = iota + 1 // a user route: only the caller's own objects
	scopeTenant                   // an admin route: only the admin's own tenant
	scopeNothing                  // refused or open: no object of anyone's
)

// maxProblems bounds the problems listed for one answer.
const maxProblems = 12

// leaks lists what an answer to c carries that c must not see:
//   - the secret word of another verifier user (every text of A's holds
//     A's, and no other caller ever sends it, so it can only come from A's
//     data);
//   - an id of A's objects (or another verifier user's id) that c did not
//     name itself — c's own audit trail and messages may echo what c sent;
//   - an object whose user_id is not c's (user routes), of another tenant
//     or of a user of another tenant (admin routes), or any object at all
//     (refused and open routes).
func (v *verifier) leaks(c *caller, r *response, sc scope) []string {
	if r == nil {
		return nil
	}
	fx := v.fx
	var text strings.Builder
	text.Write(r.body)
	for k, vals := range r.header {
		text.WriteString("\n" + k + ": " + strings.Join(vals, ", "))
	}
	s := text.String()
	var out []string
	add := func(p string) {
		if !slices.Contains(out, p) && len(out) < maxProblems {
			out = append(out, p)
		}
	}
	for _, sec := range []struct{ owner, word string }{{nameA, fx.secret}, {nameC, fx.cSecret}} {
		if sec.owner != c.Name && strings.Contains(s, sec.word) {
			add(fmt.Sprintf("carries %s's secret word %s (the text of %s's objects)", sec.owner, sec.word, sec.owner))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(fx.labels)) {
		owner := v.byName[fx.owners[id]]
		if owner == c || c.sent[id] || (sc == scopeTenant && owner != nil && owner.tenant == c.tenant) {
			continue // its own; named by itself; of the admin's own tenant
		}
		if strings.Contains(s, id) {
			add(fmt.Sprintf("carries the id of %s (%s)", fx.labels[id], id))
		}
	}
	var doc any
	if json.Unmarshal(r.body, &doc) != nil {
		return out
	}
	walkAnswer(doc, func(key string, val any) {
		str, ok := val.(string)
		if !ok || str == "" {
			return
		}
		who := fmt.Sprintf("%q", str)
		if l, ok := fx.labels[str]; ok {
			who += " (" + l + ")"
		}
		switch {
		case key == "user_id" && sc == scopeOwn && str != c.userID:
			add("holds an object of another user: user_id " + who)
		case key == "user_id" && sc == scopeNothing:
			add("holds an object of user " + who + " without a valid credential")
		case key == "user_id" && sc == scopeTenant && v.isUserID(str) && v.userTenant(str) != c.tenant:
			add(fmt.Sprintf("holds an item of %s, of tenant %q", who, v.userTenant(str)))
		case key == "tenant_id" && sc == scopeTenant && str != c.tenant:
			add(fmt.Sprintf("holds an item of tenant %q (the admin's is %q)", str, c.tenant))
		}
	})
	return out
}

// isUserID reports whether id is a verifier user's id.
func (v *verifier) isUserID(id string) bool {
	for _, c := range v.callers {
		if c.userID == id && c.role != roleApp {
			return true
		}
	}
	return id == v.a.userID
}

// userTenant is the tenant of a verifier user.
func (v *verifier) userTenant(id string) string {
	for _, c := range append([]*caller{v.a}, v.callers...) {
		if c.userID == id {
			return c.tenant
		}
	}
	return ""
}

// walkAnswer calls fn for every member of every object in v, in key
// order, but does not enter tool-call "arguments": those are the caller's
// own words (an agent turn's steps repeat them), where naming A is the
// attack, not a leak.
func walkAnswer(v any, fn func(key string, val any)) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			fn(k, x[k])
			if k != "arguments" {
				walkAnswer(x[k], fn)
			}
		}
	case []any:
		for _, e := range x {
			walkAnswer(e, fn)
		}
	}
}
