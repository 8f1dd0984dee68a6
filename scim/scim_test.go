package scim

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/idflow/idflow"
)

func entraUser(t *testing.T) idflow.DirectoryUser {
	t.Helper()
	u, err := ParseUser([]byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"externalId":"oid-1",
		"userName":"a@x.example","active":true,"password":"hunter2",
		"emails":[{"primary":true,"type":"work","value":"a@x.example"}],"name":{"givenName":"A","familyName":"B"}}`))
	if err != nil {
		t.Fatal(err)
	}
	u.ID, u.Version = "scu_1", 1
	return u
}

func TestParseUserKeepsNoPassword(t *testing.T) {
	u := entraUser(t)
	if strings.Contains(string(u.Attributes), "hunter2") {
		t.Fatalf("the password was kept: %s", u.Attributes)
	}
	if u.UserName != "a@x.example" || u.ExternalID != "oid-1" || !u.Active {
		t.Fatalf("%+v", u)
	}
}

func TestPatchUserForms(t *testing.T) {
	cases := []struct {
		name, body string
		check      func(idflow.DirectoryUser, Doc) bool
	}{
		{"Entra active string", `{"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
			func(u idflow.DirectoryUser, _ Doc) bool { return !u.Active }},
		{"Okta value object", `{"Operations":[{"op":"replace","value":{"active":false}}]}`,
			func(u idflow.DirectoryUser, _ Doc) bool { return !u.Active }},
		{"Entra dotted keys in a value object", `{"Operations":[{"op":"Replace","value":{"name.givenName":"Z","displayName":"Zed"}}]}`,
			func(u idflow.DirectoryUser, d Doc) bool {
				return u.DisplayName == "Zed" && d["name"].(map[string]any)["givenName"] == "Z"
			}},
		{"filtered add without a match", `{"Operations":[{"op":"Add","path":"phoneNumbers[type eq \"mobile\"].value","value":"+1"}]}`,
			func(_ idflow.DirectoryUser, d Doc) bool {
				p := d["phoneNumbers"].([]any)
				return len(p) == 1 && p[0].(map[string]any)["type"] == "mobile"
			}},
		{"filtered remove", `{"Operations":[{"op":"Remove","path":"emails[type eq \"work\"]"}]}`,
			func(_ idflow.DirectoryUser, d Doc) bool { return len(d["emails"].([]any)) == 0 }},
		{"extension by URN", `{"Operations":[{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"m-1"}]}`,
			func(_ idflow.DirectoryUser, d Doc) bool {
				return d[SchemaEnterprise].(map[string]any)["manager"] == "m-1"
			}},
		{"externalId changes the user id", `{"Operations":[{"op":"Replace","path":"externalId","value":"oid-2"}]}`,
			func(u idflow.DirectoryUser, _ Doc) bool { return u.ExternalID == "oid-2" }},
		{"password dropped", `{"Operations":[{"op":"Replace","path":"password","value":"x"}]}`,
			func(u idflow.DirectoryUser, _ Doc) bool { return !strings.Contains(string(u.Attributes), `"password"`) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, err := PatchUser(entraUser(t), []byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if u.ID != "scu_1" || u.Version != 1 {
				t.Fatalf("id or version changed: %+v", u)
			}
			if !c.check(u, userDoc(u)) {
				t.Fatalf("after %s: %+v %s", c.body, u, u.Attributes)
			}
		})
	}
}

func TestPatchGroupMembers(t *testing.T) {
	g := idflow.DirectoryGroup{ID: "scg_1", DisplayName: "G", Version: 3}
	ch, err := PatchGroup(g, []byte(`{"Operations":[
		{"op":"Add","path":"members","value":[{"value":"u1"},{"value":"u2"}]},
		{"op":"Remove","path":"members","value":[{"value":"u2"}]},
		{"op":"remove","path":"members[value eq \"u3\"]"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if ch.ReplaceMembers || strings.Join(ch.Add, ",") != "u1" || strings.Join(ch.Remove, ",") != "u2,u3" || ch.DocChanged {
		t.Fatalf("%+v", ch)
	}
	ch, err = PatchGroup(g, []byte(`{"Operations":[{"op":"replace","path":"members","value":[{"value":"u9"}]},{"op":"add","path":"members","value":[{"value":"u8"}]}]}`))
	if err != nil || !ch.ReplaceMembers || len(ch.Members) != 2 {
		t.Fatalf("%+v %v", ch, err)
	}
}

func TestFilter(t *testing.T) {
	f, err := ParseFilter(Groups, `displayName eq "A" and members[value eq "u1"]`)
	if err != nil || *f.DisplayName != "A" || *f.Member != "u1" {
		t.Fatalf("%+v %v", f, err)
	}
	for _, bad := range []string{`displayName ne "A"`, `userName eq "a"`, `members.display eq "x"`, `not (id eq "x")`} {
		if _, err := ParseFilter(Groups, bad); err == nil || TypeOf(err) != "invalidFilter" {
			t.Errorf("%s: %v; want invalidFilter", bad, err)
		}
	}
}

// FuzzFilter: any filter is parsed or refused with invalidFilter (400),
// never a panic.
func FuzzFilter(f *testing.F) {
	for _, s := range []string{`userName eq "a"`, `members[value eq "x"]`, `a eq "b" and c eq "d"`, `((`, `x[y eq "z"].w eq 1`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, kind := range []string{Users, Groups} {
			if _, err := ParseFilter(kind, s); err != nil && idflow.ErrorCode(err) != idflow.EINVALID {
				t.Fatalf("%q: %v", s, err)
			}
		}
	})
}

// FuzzPatch: any PATCH body is applied or refused as a caller error,
// never a panic; what is applied is a user idflow can store.
func FuzzPatch(f *testing.F) {
	for _, s := range []string{`{"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
		`{"Operations":[{"op":"Add","path":"emails[type eq \"work\"].value","value":"x"}]}`,
		`{"Operations":[{"op":"Remove","path":"members","value":[{"value":"u"}]}]}`,
		`{"Operations":[{"op":"replace","value":{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"d"}}}]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		u := idflow.DirectoryUser{ID: "scu_1", UserName: "a", Active: true, Attributes: json.RawMessage(`{"userName":"a"}`)}
		out, err := PatchUser(u, []byte(body))
		if err != nil {
			switch idflow.ErrorCode(err) {
			case idflow.EINVALID, idflow.ETOOLARGE:
				return
			}
			t.Fatalf("%q: %v", body, err)
		}
		if !json.Valid(out.Attributes) {
			t.Fatalf("%q: attributes %q", body, out.Attributes)
		}
		if _, err := PatchGroup(idflow.DirectoryGroup{ID: "scg_1", DisplayName: "g"}, []byte(body)); err != nil &&
			idflow.ErrorCode(err) != idflow.EINVALID && idflow.ErrorCode(err) != idflow.ETOOLARGE {
			t.Fatalf("group %q: %v", body, err)
		}
	})
}
