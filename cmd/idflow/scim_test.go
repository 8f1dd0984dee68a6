package main

import (
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/internal/testsvc"
)

// The SCIM conformance suite: the real server, driven through a whole
// provisioning cycle with request bodies shaped as Microsoft Entra ID's
// provisioning service and Okta send them (their documented examples,
// learn.microsoft.com "Tutorial: Develop and plan provisioning for a SCIM
// endpoint" and Okta's "SCIM 2.0 protocol reference"), on SQLite and on
// PostgreSQL, and the attacks on it.

// scimGroupOID is the Entra object id of the directory group alice joins:
// what a token's groups claim would carry, and what the policy names.
const scimGroupOID = "6f0c7a7e-0000-4000-8000-00000000ab01"

func startSCIMServer(t *testing.T, extra map[string]string) *prodServer {
	t.Helper()
	policy := filepath.Join(t.TempDir(), "policy.json")
	// Ingesting documents is for the research group only: alice's token
	// does not carry it (overage), the directory does.
	if err := os.WriteFile(policy, []byte(`{"features": {"etl.ingest": {"groups": ["`+scimGroupOID+`"]}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"IDFLOW_SCIM_CLIENTS": testAppClientID, "IDFLOW_POLICY_FILE": policy}
	for k, v := range extra {
		env[k] = v
	}
	return startProdIdflow(t, env)
}

// scimReq sends a SCIM request as token, with application/scim+json.
func (s *prodServer) scimReq(t testing.TB, token, method, path string, body any, headers ...header) reply {
	t.Helper()
	if body != nil {
		headers = append([]header{{"Content-Type", "application/scim+json"}}, headers...)
	}
	return s.Do(t, method, "/scim/v2"+path, token, body, headers...)
}

// scimDoc decodes a SCIM answer, requiring its media type.
func scimJSON(t testing.TB, r reply, want int) map[string]any {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s; want %d", r, want)
	}
	var doc map[string]any
	if len(r.Body) == 0 {
		return doc
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/scim+json" {
		t.Fatalf("%s: Content-Type %q; want application/scim+json", r, r.Header.Get("Content-Type"))
	}
	r.JSON(t, &doc)
	return doc
}

// scimError requires SCIM's error document with status want (and its
// scimType, when given).
func scimError(t testing.TB, r reply, want int, scimType string) {
	t.Helper()
	doc := scimJSON(t, r, want)
	schemas, _ := doc["schemas"].([]any)
	if len(schemas) != 1 || schemas[0] != "urn:ietf:params:scim:api:messages:2.0:Error" || doc["status"] != strconv.Itoa(want) || doc["detail"] == "" {
		t.Fatalf("%s: not a SCIM error document with status %d", r, want)
	}
	if scimType != "" && doc["scimType"] != scimType {
		t.Fatalf("%s: scimType %v; want %s", r, doc["scimType"], scimType)
	}
}

// me answers the caller's /api/v1/me, or the refusal's status.
func (s *prodServer) me(t testing.TB, who string) (int, map[string]any) {
	t.Helper()
	r := s.As(t, who, "GET", "/api/v1/me", nil)
	var out map[string]any
	if r.Status == http.StatusOK {
		r.JSON(t, &out)
	}
	return r.Status, out
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestSCIMConformance(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		scimCycle(t, startSCIMServer(t, nil))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		pg := testsvc.StartPostgres(t)
		db := pg.NewDatabase(t)
		scimCycle(t, startSCIMServer(t, map[string]string{"IDFLOW_DATABASE_URL": db.AppURL, "IDFLOW_MIGRATE_DATABASE_URL": db.OwnerURL}))
	})
}

func scimCycle(t *testing.T, s *prodServer) {
	app := s.Token(t, callerApp)
	aliceOID := s.UserID(t, callerAlice)
	const userName = "alice@contoso.example"

	// Discovery.
	cfg := scimJSON(t, s.scimReq(t, app, "GET", "/ServiceProviderConfig", nil), 200)
	if cfg["patch"].(map[string]any)["supported"] != true || cfg["etag"].(map[string]any)["supported"] != true {
		t.Fatalf("ServiceProviderConfig: %v", cfg)
	}
	scimJSON(t, s.scimReq(t, app, "GET", "/Schemas", nil), 200)
	scimJSON(t, s.scimReq(t, app, "GET", "/ResourceTypes", nil), 200)

	// Entra first looks the user up by its matching attribute.
	q := "/Users?filter=" + url.QueryEscape(`userName eq "`+userName+`"`)
	if l := scimJSON(t, s.scimReq(t, app, "GET", q, nil), 200); l["totalResults"] != 0.0 {
		t.Fatalf("before provisioning: %v", l)
	}
	// Entra's create (its documented request, with our user's oid).
	created := s.scimReq(t, app, "POST", "/Users", map[string]any{
		"schemas":    []string{"urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"},
		"externalId": aliceOID, "userName": userName, "active": true, "displayName": "Alice Example",
		"emails": []any{map[string]any{"primary": true, "type": "work", "value": userName}},
		"meta":   map[string]any{"resourceType": "User"},
		"name":   map[string]any{"formatted": "Alice Example", "familyName": "Example", "givenName": "Alice"},
		"roles":  []any{},
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"department": "Research"},
	})
	u := scimJSON(t, created, 201)
	uid, _ := u["id"].(string)
	if uid == "" || u["externalId"] != aliceOID || u["active"] != true || created.Header.Get("ETag") == "" ||
		!strings.HasSuffix(created.Header.Get("Location"), "/scim/v2/Users/"+uid) {
		t.Fatalf("created user: %s", created)
	}
	scimError(t, s.scimReq(t, app, "POST", "/Users", map[string]any{"userName": strings.ToUpper(userName), "externalId": "another"}), 409, "uniqueness")
	for _, f := range []string{`userName eq "` + strings.ToUpper(userName) + `"`, `externalId eq "` + aliceOID + `"`,
		`userName eq "` + userName + `" and externalId eq "` + aliceOID + `"`} {
		l := scimJSON(t, s.scimReq(t, app, "GET", "/Users?filter="+url.QueryEscape(f), nil), 200)
		if l["totalResults"] != 1.0 || len(l["Resources"].([]any)) != 1 {
			t.Fatalf("filter %s: %v", f, l)
		}
	}
	if l := scimJSON(t, s.scimReq(t, app, "GET", "/Users?startIndex=2&count=5", nil), 200); l["totalResults"] != 1.0 || len(l["Resources"].([]any)) != 0 {
		t.Fatalf("second page: %v", l)
	}

	// Entra's update: capitalised ops, a filtered email, a sub-attribute,
	// the enterprise extension.
	patched := scimJSON(t, s.scimReq(t, app, "PATCH", "/Users/"+uid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"Replace","path":"displayName","value":"Alice E."},
		{"op":"Add","path":"emails[type eq \"work\"].value","value":"alice.e@contoso.example"},
		{"op":"Replace","path":"name.familyName","value":"Exemplar"},
		{"op":"Replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Platform"}]}`), 200)
	emails := patched["emails"].([]any)
	if patched["displayName"] != "Alice E." || len(emails) != 1 || emails[0].(map[string]any)["value"] != "alice.e@contoso.example" ||
		patched["name"].(map[string]any)["familyName"] != "Exemplar" ||
		patched["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"].(map[string]any)["department"] != "Platform" {
		t.Fatalf("after Entra's PATCH: %v", patched)
	}

	// The research group: alice's token does not carry it, so she may not
	// ingest documents.
	ingest := map[string]any{"filename": "notes.txt", "content": "research notes"}
	mustStatus(t, s.As(t, callerAlice, "POST", "/api/v1/etl/ingest", ingest), http.StatusForbidden)
	g := scimJSON(t, s.scimReq(t, app, "POST", "/Groups", map[string]any{
		"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "externalId": scimGroupOID, "displayName": "Research",
		"meta": map[string]any{"resourceType": "Group"}, "members": []any{}}), 201)
	gid := g["id"].(string)
	l := scimJSON(t, s.scimReq(t, app, "GET", "/Groups?excludedAttributes=members&filter="+url.QueryEscape(`displayName eq "research"`), nil), 200)
	if l["totalResults"] != 1.0 {
		t.Fatalf("group lookup: %v", l)
	}
	// Entra adds members with a value list.
	r := s.scimReq(t, app, "PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"Add","path":"members","value":[{"$ref":null,"value":"`+uid+`"}]}]}`)
	mustStatus(t, r, http.StatusNoContent)
	l = scimJSON(t, s.scimReq(t, app, "GET", "/Groups?filter="+url.QueryEscape(`id eq "`+gid+`" and members eq "`+uid+`"`), nil), 200)
	if l["totalResults"] != 1.0 {
		t.Fatalf("membership lookup: %v", l)
	}
	st, me := s.me(t, callerAlice)
	if st != 200 || !slices.Contains(strs(me["groups"]), scimGroupOID) || !slices.Contains(strs(me["directory_groups"]), "Research") ||
		slices.Contains(strs(me["token_groups"]), scimGroupOID) {
		t.Fatalf("alice's /me after joining the directory group: %d %v", st, me)
	}
	mustStatus(t, s.As(t, callerAlice, "POST", "/api/v1/etl/ingest", ingest), http.StatusCreated)

	// Deactivation, Entra's way: the string "False". Refused at once.
	mustStatus(t, s.As(t, callerAlice, "GET", "/api/v1/apps", nil), http.StatusOK) // her token is in the verified-token cache
	d := scimJSON(t, s.scimReq(t, app, "PATCH", "/Users/"+uid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"Replace","path":"active","value":"False"}]}`), 200)
	if d["active"] != false {
		t.Fatalf("after active False: %v", d)
	}
	for _, path := range []string{"/api/v1/me", "/api/v1/apps"} {
		checkProblem(t, s.As(t, callerAlice, "GET", path, nil), http.StatusForbidden)
	}
	mustStatus(t, s.As(t, callerBob, "GET", "/api/v1/me", nil), http.StatusOK) // nobody else
	// Reactivation, Okta's way: a value object without a path.
	scimJSON(t, s.scimReq(t, app, "PATCH", "/Users/"+uid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"replace","value":{"active":true}}]}`), 200)
	if st, _ := s.me(t, callerAlice); st != 200 {
		t.Fatalf("alice after reactivation: %d", st)
	}

	// Entra removes members with a value list; Okta with a value filter.
	mustStatus(t, s.scimReq(t, app, "PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"Remove","path":"members","value":[{"value":"`+uid+`"}]}]}`), http.StatusNoContent)
	if _, me := s.me(t, callerAlice); slices.Contains(strs(me["groups"]), scimGroupOID) {
		t.Fatalf("alice keeps the group after Entra's removal: %v", me)
	}
	mustStatus(t, s.scimReq(t, app, "PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"add","path":"members","value":[{"value":"`+uid+`","display":"alice"}]},
		{"op":"replace","value":{"id":"`+gid+`","displayName":"Research Team"}}]}`), http.StatusNoContent)
	gr := scimJSON(t, s.scimReq(t, app, "GET", "/Groups/"+gid, nil), 200)
	if gr["displayName"] != "Research Team" || len(gr["members"].([]any)) != 1 {
		t.Fatalf("group after Okta's PATCH: %v", gr)
	}
	mustStatus(t, s.scimReq(t, app, "PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"remove","path":"members[value eq \"`+uid+`\"]"}]}`), http.StatusNoContent)
	if gr := scimJSON(t, s.scimReq(t, app, "GET", "/Groups/"+gid, nil), 200); len(gr["members"].([]any)) != 0 {
		t.Fatalf("group after Okta's removal: %v", gr)
	}

	// ETags: a stale If-Match is refused.
	cur := s.scimReq(t, app, "GET", "/Users/"+uid, nil)
	etag := cur.Header.Get("ETag")
	scimJSON(t, s.scimReq(t, app, "PATCH", "/Users/"+uid, `{"Operations":[{"op":"replace","path":"title","value":"Lead"}]}`, header{"If-Match", etag}), 200)
	scimError(t, s.scimReq(t, app, "PATCH", "/Users/"+uid, `{"Operations":[{"op":"replace","path":"title","value":"x"}]}`, header{"If-Match", etag}), 412, "invalidVers")

	// Okta's full replace (PUT) of the user, still active.
	scimJSON(t, s.scimReq(t, app, "PUT", "/Users/"+uid, map[string]any{
		"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "id": uid, "externalId": aliceOID,
		"userName": userName, "name": map[string]any{"givenName": "Alice", "familyName": "Example"}, "active": true,
		"emails": []any{map[string]any{"primary": true, "value": userName, "type": "work"}}}), 200)

	// Deprovisioning: the directory forgets her, she stays refused.
	mustStatus(t, s.scimReq(t, app, "DELETE", "/Users/"+uid, nil), http.StatusNoContent)
	scimError(t, s.scimReq(t, app, "GET", "/Users/"+uid, nil), 404, "")
	checkProblem(t, s.As(t, callerAlice, "GET", "/api/v1/me", nil), http.StatusForbidden)
	mustStatus(t, s.scimReq(t, app, "DELETE", "/Groups/"+gid, nil), http.StatusNoContent)

	// Deleted is erased: nothing of hers is left to let back in, for her
	// tenant's admin either, and she stays refused.
	mustStatus(t, s.As(t, callerAdmin2, "POST", "/api/v1/admin/users/"+aliceOID+"/enable", nil), http.StatusNotFound)
	mustStatus(t, s.As(t, callerAdmin, "POST", "/api/v1/admin/users/"+aliceOID+"/enable", nil), http.StatusNotFound)
	checkProblem(t, s.As(t, callerAlice, "GET", "/api/v1/me", nil), http.StatusForbidden)

	// The audit trail has the SCIM changes and the deactivations.
	events := s.auditEvents(t, callerRoot, "/api/v1/admin/audit")
	for _, action := range []string{"scim.user.create", "scim.user.update", "scim.group.create", "scim.group.update", "scim.user.delete", "scim.user.erase", "user.disable", "user.enable"} {
		if !slices.ContainsFunc(events, func(e auditEvent) bool { return e.Action == action }) {
			t.Errorf("no %s event in the audit trail", action)
		}
	}
}

// TestSCIMAttacks: every caller but the allowlisted provisioning client
// of a tenant is refused, and nothing malformed causes a 5xx (the
// harness fails on any).
func TestSCIMAttacks(t *testing.T) {
	t.Parallel()
	s := startSCIMServer(t, nil)
	app := s.Token(t, callerApp)
	bobOID := s.UserID(t, callerBob)
	u := scimJSON(t, s.scimReq(t, app, "POST", "/Users", map[string]any{"userName": "bob@contoso.example", "externalId": bobOID}), 201)
	uid := u["id"].(string)

	// The same client's token for another tenant provisions that tenant
	// only: t-one's user is not found, cannot be disabled.
	otherTenant := s.Issuer.Sign(s.Issuer.EntraV2App(authtest.EntraApp{TenantID: "t-two", ClientID: testAppClientID, Issuer: s.Issuer.Issuer(), IDTyp: true}))
	if l := scimJSON(t, s.scimReq(t, otherTenant, "GET", "/Users", nil), 200); l["totalResults"] != 0.0 {
		t.Fatalf("t-two's client lists t-one's users: %v", l)
	}
	scimError(t, s.scimReq(t, otherTenant, "GET", "/Users/"+uid, nil), 404, "")
	scimError(t, s.scimReq(t, otherTenant, "PATCH", "/Users/"+uid, `{"Operations":[{"op":"Replace","path":"active","value":"False"}]}`), 404, "")
	scimError(t, s.scimReq(t, otherTenant, "DELETE", "/Users/"+uid, nil), 404, "")
	// Its own user of the same externalId is another user: disabling it
	// leaves t-one's bob alone.
	o := scimJSON(t, s.scimReq(t, otherTenant, "POST", "/Users", map[string]any{"userName": "bob@other.example", "externalId": bobOID, "active": false}), 201)
	if o["active"] != false {
		t.Fatalf("t-two's user: %v", o)
	}
	mustStatus(t, s.As(t, callerBob, "GET", "/api/v1/me", nil), http.StatusOK)

	// Not a provisioning client: a user (even an admin), an app-only token
	// of another client, no token.
	stranger := s.Issuer.Sign(s.Issuer.EntraV2App(authtest.EntraApp{TenantID: "t-one", ClientID: "some-other-app", Issuer: s.Issuer.Issuer(), IDTyp: true}))
	for _, tok := range []string{s.Token(t, callerAlice), s.Token(t, callerAdmin), stranger} {
		scimError(t, s.scimReq(t, tok, "GET", "/Users", nil), 403, "")
		scimError(t, s.scimReq(t, tok, "PATCH", "/Users/"+uid, `{"Operations":[{"op":"replace","path":"active","value":false}]}`), 403, "")
	}
	scimError(t, s.scimReq(t, "", "GET", "/Users", nil), 401, "")
	mustStatus(t, s.As(t, callerBob, "GET", "/api/v1/me", nil), http.StatusOK)

	// Malformed filters and bodies: SCIM errors, never a 5xx.
	for _, f := range []string{`userName eq`, `userName co "a"`, `title eq "x"`, `userName eq "a" or userName eq "b"`, `((((`, `emails[type eq "work"`,
		`urn:bogus:Schema:userName eq "a"`, `userName eq 12`, strings.Repeat("a", 2000)} {
		scimError(t, s.scimReq(t, app, "GET", "/Users?filter="+url.QueryEscape(f), nil), 400, "invalidFilter")
	}
	for _, body := range []string{`not json`, `[]`, `{"Operations":[]}`, `{"Operations":[{"op":"frobnicate","path":"title","value":"x"}]}`,
		`{"Operations":[{"op":"replace","path":"members[value eq","value":"x"}]}`, `{"Operations":[{"op":"replace","path":"active","value":"maybe"}]}`,
		`{"Operations":[{"op":"replace","value":"not an object"}]}`, `{"Operations":[{"op":"remove"}]}`, `{"Operations":[{"op":"replace","path":"id","value":"scu_x"}]}`,
		`{"Operations":[{"op":"replace","path":"userName","value":7}]}`, `{"Operations":[{"op":"add","path":"emails[type eq \"work\" or type eq \"home\"].value","value":"x"}]}`} {
		r := s.scimReq(t, app, "PATCH", "/Users/"+uid, body)
		if r.Status != 400 {
			t.Errorf("PATCH %s: %s; want 400", body, r)
			continue
		}
		scimError(t, r, 400, "")
	}
	scimError(t, s.scimReq(t, app, "POST", "/Groups", map[string]any{"displayName": "g", "members": []any{map[string]any{"value": "scu_nobody"}}}), 400, "")
	scimError(t, s.scimReq(t, app, "DELETE", "/Users/"+uid, nil, header{"If-Match", `W/"999"`}), 412, "invalidVers")
}
