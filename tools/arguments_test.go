package tools

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/idflow/idflow"
)

func TestIdentityKeys(t *testing.T) {
	for _, k := range []string{
		"user_id", "userId", "USER_ID", "user-id", "user.id", "user id", "UserID",
		"owner", "Owner", "OWNER", "owner_id", "ownerId", "as_user", "asUser", "AS-USER",
		"on_behalf_of", "onBehalfOf", "on-behalf-of", "On.Behalf.Of", "impersonate", "IMPERSONATE",
		"aſ_uſer",       // ſ folds to s, as a case-insensitive JSON decoder would fold it
		"user\u200bid",  // a zero-width space between the words
		"__user__id__",  // separators anywhere
		"owner\u2013id", // an en dash
	} {
		if !identityKey(k, false) {
			t.Errorf("%q is not recognised as naming a user", k)
		}
	}
	for _, k := range []string{"content", "query", "session_id", "run_id", "workflow_id", "limit", "input", "owners", "username", "email", "tenant_id", "", "_"} {
		if identityKey(k, false) {
			t.Errorf("%q is taken for a user argument of any tool", k)
		}
	}
	// A built-in tool has none of these either: at its top level they go too.
	for _, k := range []string{"email", "tenant_id", "sub", "as", "userName", "account_id"} {
		if !identityKey(k, true) {
			t.Errorf("%q is not recognised at the top level of a built-in tool", k)
		}
	}
}

func TestPrepareArgumentsStripsAtEveryDepth(t *testing.T) {
	raw := json.RawMessage(`{"content":"x","user_id":"bob","Owner":"bob","filter":{"onBehalfOf":"bob","keep":{"IMPERSONATE":"bob","q":1}},
		"list":[{"as_user":"bob","n":1.50},[{"owner_id":"bob"}]],"a/b":{"user_id":"bob"},"email":"bob@x","big":12345678901234567890}`)
	for _, builtin := range []bool{false, true} {
		p, err := prepareArguments(raw, 1<<10, builtin)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"/Owner", "/a~1b/user_id", "/filter/keep/IMPERSONATE", "/filter/onBehalfOf", "/list/0/as_user", "/list/1/0/owner_id", "/user_id"}
		got := `{"a/b":{},"big":12345678901234567890,"content":"x","email":"bob@x","filter":{"keep":{"q":1}},"list":[{"n":1.50},[{}]]}`
		if builtin {
			want = append(want, "/email")
			got = `{"a/b":{},"big":12345678901234567890,"content":"x","filter":{"keep":{"q":1}},"list":[{"n":1.50},[{}]]}`
		}
		slices.Sort(p.removed)
		slices.Sort(want)
		if !slices.Equal(p.removed, want) {
			t.Errorf("builtin=%v: removed %v; want %v", builtin, p.removed, want)
		}
		if string(p.raw) != got {
			t.Errorf("builtin=%v: arguments %s; want %s (numbers exactly as sent)", builtin, p.raw, got)
		}
	}
}

func TestPrepareArgumentsRefusesNonObjects(t *testing.T) {
	for _, c := range []struct {
		raw  string
		code string
	}{
		{`[1]`, idflow.EINVALID}, {`"x"`, idflow.EINVALID}, {`3`, idflow.EINVALID}, {`{`, idflow.EINVALID},
		{`{"a":1} {"b":2}`, idflow.EINVALID}, {`{"a":1}x`, idflow.EINVALID}, {"{\"a\":\"\xff\"}", idflow.EINVALID},
		{`{"a":"` + strings.Repeat("x", 200) + `"}`, idflow.ETOOLARGE},
		// Encoded again, U+2028 grows from 3 to 6 bytes: the bound holds after.
		{`{"a":"` + strings.Repeat("\u2028", 40) + `"}`, idflow.ETOOLARGE},
	} {
		if _, err := prepareArguments(json.RawMessage(c.raw), 200, false); idflow.ErrorCode(err) != c.code {
			t.Errorf("arguments %.40q: %v; want %s", c.raw, err, c.code)
		}
	}
	for _, raw := range []string{``, `null`, `  null `, `{}`} {
		if p, err := prepareArguments(json.RawMessage(raw), 200, false); err != nil || string(p.raw) != "{}" {
			t.Errorf("arguments %q: %s, %v; want {}", raw, p.raw, err)
		}
	}
	// A built-in's null arguments are absent ones; HTML is not escaped.
	if p, err := prepareArguments(json.RawMessage(`{"limit":null,"query":"<a&b>"}`), 200, true); err != nil || string(p.raw) != `{"query":"<a&b>"}` {
		t.Errorf("built-in arguments: %s, %v", p.raw, err)
	}
}

func TestArgumentTypes(t *testing.T) {
	a, err := parseArguments(json.RawMessage(`{"s":"v","n":3,"f":2.5,"bad":1,"blank":"  "}`))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := a.str("s", true); err != nil || v != "v" {
		t.Fatalf("str(s) = %q, %v", v, err)
	}
	for _, name := range []string{"missing", "blank"} {
		if _, err := a.str(name, true); err == nil {
			t.Fatalf("a required %s string was accepted", name)
		}
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

func TestTruncateIsBoundedJSON(t *testing.T) {
	for _, body := range []string{
		strings.Repeat("x", 10000),
		strings.Repeat(`"<\u0001>`, 3000), // escapes grow the head
		strings.Repeat("é漢😀", 2000),       // multi-byte runes are never cut
	} {
		b, _ := json.Marshal(map[string]string{"body": body})
		out := truncate(b, 1024)
		var got truncated
		if len(out) > 1024 || json.Unmarshal([]byte(out), &got) != nil || !got.Truncated || got.Bytes != len(b) || got.Head == "" ||
			!strings.HasPrefix(string(b), got.Head) {
			t.Fatalf("truncate: %d bytes, %.80s", len(out), out)
		}
	}
}

// FuzzToolArguments: whatever the arguments, preparing them never panics,
// answers a JSON object within the bound, and lets no argument naming a
// user through, at any depth.
func FuzzToolArguments(f *testing.F) {
	for _, seed := range []string{
		`{}`, `null`, `{"user_id":"bob"}`, `{"a":{"b":[{"Owner":1}]}}`, `{"onBehalfOf":{"user_id":"x"}}`,
		`{"aſ_uſer":"bob","content":"x"}`, `[{"user_id":1}]`, `{"a":1}{"b":2}`, `{"x":"\u2028"}`,
		`{"n":1e400}`, `{"deep":[[[[[[[[{"impersonate":true}]]]]]]]]}`, "{\"\xff\":1}", `{"user_id":"a","user_id":"b"}`,
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	const limit = 4 << 10
	f.Fuzz(func(t *testing.T, raw []byte, builtin bool) {
		p, err := prepareArguments(raw, limit, builtin)
		if err != nil {
			if c := idflow.ErrorCode(err); c != idflow.EINVALID && c != idflow.ETOOLARGE {
				t.Fatalf("error %v of code %s", err, c)
			}
			return
		}
		if len(p.raw) > limit {
			t.Fatalf("%d bytes of arguments; the bound is %d", len(p.raw), limit)
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(p.raw))
		dec.UseNumber() // 1e400 is JSON, if not a float64
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("prepared arguments are not JSON: %v: %s", err, p.raw)
		}
		if _, ok := v.(map[string]any); !ok {
			t.Fatalf("prepared arguments are not an object: %s", p.raw)
		}
		var walk func(v any, top bool)
		walk = func(v any, top bool) {
			switch v := v.(type) {
			case map[string]any:
				for k, child := range v {
					if identityKey(k, top && builtin) {
						t.Fatalf("the identity argument %q got through: %s", k, p.raw)
					}
					walk(child, false)
				}
			case []any:
				for _, child := range v {
					walk(child, false)
				}
			}
		}
		walk(v, true)
	})
}
