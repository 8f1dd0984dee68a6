package main

import (
	"database/sql"
	"mime"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idflow/idflow"
)

// Personal access tokens as callers of the authorization matrix: every
// route is tried with alice's PAT, with PATs of other users (an admin's and
// the platform admin's included: a PAT never administers), an expired one,
// a revoked one, and one lacking exactly the scope the route needs.

const (
	patAlice   = "pat-alice"   // alice, every scope
	patBob     = "pat-bob"     // bob, every scope
	patAdmin   = "pat-admin"   // t-one's admin, every scope
	patRoot    = "pat-root"    // the platform admin, every scope
	patExpired = "pat-expired" // alice, every scope, past its expiry
	patRevoked = "pat-revoked" // alice, every scope, revoked
)

// patLacking is alice's PAT with every scope but scope.
func patLacking(scope string) string { return "pat-lacking-" + scope }

var patOwner = map[string]string{patAlice: callerAlice, patBob: callerBob, patAdmin: callerAdmin, patRoot: callerRoot,
	patExpired: callerAlice, patRevoked: callerAlice}

// patTokenRE is the form of a token: the prefix and 256 bits in base64url.
var patTokenRE = regexp.MustCompile(`^idf_pat_[A-Za-z0-9_-]{43}$`)

// mintPAT creates a PAT as who (by its bearer token) and registers it as
// the caller name; it answers the token's id.
func (s *prodServer) mintPAT(t *testing.T, name, who string, scopes []string) string {
	t.Helper()
	r := s.As(t, who, "POST", "/api/v1/tokens", map[string]any{"name": name, "scopes": scopes})
	mustStatus(t, r, http.StatusCreated)
	var out struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	r.JSON(t, &out)
	if !patTokenRE.MatchString(out.Token) {
		t.Fatalf("token %q does not have the documented form", out.Token)
	}
	s.mu.Lock()
	s.tokens[name] = out.Token
	s.mu.Unlock()
	return out.ID
}

// expirePAT moves a token's expiry into the past, in the database.
func expirePAT(t *testing.T, dataDir, id string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "idflow.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.Exec(`UPDATE personal_tokens SET expires_at = ? WHERE id = ?`, time.Now().Add(-time.Second).UnixNano(), id)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("expiring token %s changed %d rows", id, n)
	}
}

// expectedPAT is the answer a PAT caller must get from op.
func expectedPAT(op apiOp, caller string) int {
	mc := matrixCases[op.key()]
	switch {
	case op.Access == "open":
		if mc.status != 0 {
			return mc.status
		}
		return op.Success
	case caller == patExpired || caller == patRevoked:
		return http.StatusUnauthorized
	case op.TokenScope == "" || caller == patLacking(op.TokenScope):
		return http.StatusForbidden
	}
	st := op.Success
	if op.byID() && patOwner[caller] != callerAlice {
		st = http.StatusNotFound // admins' PATs included: a PAT holds no admin reach
	}
	if mc.ok != 0 && st == op.Success {
		st = mc.ok
	}
	return st
}

func TestAuthorizationMatrixPersonalTokens(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	s := startProdIdflow(t, map[string]string{"IDFLOW_DATA_DIR": dataDir})
	ops := fetchOps(t, s)

	attackers := []string{patBob, patAdmin, patRoot, patExpired, patRevoked}
	for _, who := range []string{patAlice, patBob, patAdmin, patRoot, patExpired, patRevoked} {
		id := s.mintPAT(t, who, patOwner[who], idflow.TokenScopes)
		switch who {
		case patExpired:
			expirePAT(t, dataDir, id)
		case patRevoked:
			mustStatus(t, s.As(t, callerAlice, "DELETE", "/api/v1/tokens/"+id, nil), http.StatusNoContent)
		}
	}
	for _, scope := range idflow.TokenScopes {
		others := slices.DeleteFunc(slices.Clone(idflow.TokenScopes), func(s string) bool { return s == scope })
		s.mintPAT(t, patLacking(scope), callerAlice, others)
		patOwner[patLacking(scope)] = callerAlice
	}

	var aliceIDs []string
	shared := newFixture(t, s, callerAlice, false, &aliceIDs)
	for _, p := range []string{"app_id", "agent_id", "session_id", "workflow_id", "run_id", "document_id", "fact_id", "token_id"} {
		shared.id(p)
	}
	aliceUserID := s.UserID(t, callerAlice)

	scoped := 0
	for _, op := range ops {
		if _, ok := matrixCases[op.key()]; !ok {
			t.Errorf("route %s has no authorization-matrix case", op.key())
			continue
		}
		if op.TokenScope != "" {
			scoped++
			if op.Access == "admin" || op.Access == "internal" || op.Access == "open" || strings.HasPrefix(op.Path, "/api/v1/tokens") {
				t.Errorf("%s (%s) takes personal access tokens (scope %q)", op.key(), op.Access, op.TokenScope)
			}
		}
		t.Run(op.key(), func(t *testing.T) {
			fx := shared
			if op.Method != "GET" && op.byID() {
				fx = newFixture(t, s, callerAlice, op.Path == "/api/v1/runs/{run_id}/cancel", &aliceIDs)
			}
			mc := matrixCases[op.key()]
			path := fill(op.Path, func(p string) string {
				if v, ok := mc.params[p]; ok {
					return v
				}
				return fx.id(p)
			})
			// Alice's PAT lacking the route's scope (any, where PATs are
			// refused), then alice's own: an attacker's success would show
			// on her object first.
			lacking := op.TokenScope
			if lacking == "" {
				lacking = idflow.ScopeRead
			}
			for _, caller := range append(slices.Clone(attackers), patLacking(lacking), patAlice) {
				r := s.As(t, caller, op.Method, path, mc.body, mc.headers...)
				want := expectedPAT(op, caller)
				if op.Path == "/ws/execution/{run_id}" && want == op.Success {
					if r.Status < 400 || r.Status >= 500 || r.Status == http.StatusNotFound {
						t.Errorf("%s as %s: %s; want a 4xx other than 404 from the WebSocket handshake", op.key(), caller, r)
					}
					continue
				}
				if r.Status != want {
					t.Errorf("%s as %s: %s; want %d", op.key(), caller, r, want)
					continue
				}
				switch {
				case r.Status < 400 || mc.ok != 0 && r.Status == mc.ok:
				case strings.HasPrefix(op.Path, "/scim/"): // SCIM clients read SCIM's error document
					if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/scim+json" {
						t.Errorf("%s as %s: %s: Content-Type %q; want application/scim+json", op.key(), caller, r, r.Header.Get("Content-Type"))
					}
				default:
					checkProblem(t, r, want)
				}
				if r.Status == http.StatusUnauthorized && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s as %s: 401 without a Bearer challenge", op.key(), caller)
				}
				if r.Status < 300 && op.Access == "user" && patOwner[caller] != callerAlice {
					checkNoLeak(t, s, r, patOwner[caller], aliceIDs, aliceUserID, op.Path == "/api/v1/audit" || op.Path == "/api/v1/me/export")
				}
				if strings.Contains(string(r.Body), s.Token(t, caller)) {
					t.Errorf("%s as %s: the answer quotes the token", op.key(), caller)
				}
			}
		})
	}
	if scoped == 0 {
		t.Fatal("no route takes a personal access token")
	}
}

// TestPersonalTokens: a PAT's life through the real server — created and
// shown once, acting as its user on the API and /mcp, its last use kept
// and audited at the documented cadence, revoked at once; and the attacks
// on its making: a PAT making a PAT, scopes that are not scopes, lifetimes
// out of bounds.
func TestPersonalTokens(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, nil)
	aliceID := s.UserID(t, callerAlice)

	before := time.Now()
	id := s.mintPAT(t, "script", callerAlice, []string{idflow.ScopeRead, idflow.ScopeMCP})
	raw := s.Token(t, "script")

	// Shown once: the list has the token's facts, never the token.
	r := s.As(t, callerAlice, "GET", "/api/v1/tokens", nil)
	mustStatus(t, r, http.StatusOK)
	if strings.Contains(string(r.Body), raw) || strings.Contains(string(r.Body), `"token"`) {
		t.Fatalf("the list shows the token: %s", r)
	}
	var list struct {
		Items []idflow.PersonalToken `json:"items"`
	}
	r.JSON(t, &list)
	if len(list.Items) != 1 || list.Items[0].ID != id || list.Items[0].LastUsedAt != nil || list.Items[0].UserID != aliceID {
		t.Fatalf("list %+v", list.Items)
	}
	// Default lifetime: 90 days.
	if exp := list.Items[0].ExpiresAt; exp.Before(before.Add(idflow.DefaultTokenLifetime-time.Minute)) || exp.After(time.Now().Add(idflow.DefaultTokenLifetime)) {
		t.Errorf("expires_at %v; want 90 days from now", exp)
	}

	// It acts as alice, with its scopes.
	r = s.As(t, "script", "GET", "/api/v1/me", nil)
	mustStatus(t, r, http.StatusOK)
	var me struct {
		UserID     string   `json:"user_id"`
		AuthMethod string   `json:"auth_method"`
		Scopes     []string `json:"scopes"`
	}
	r.JSON(t, &me)
	if me.UserID != aliceID || me.AuthMethod != "personal_token" || !slices.Equal(me.Scopes, []string{"read", "mcp"}) {
		t.Fatalf("/api/v1/me with the PAT: %+v", me)
	}
	mustStatus(t, s.As(t, "script", "GET", "/api/v1/facts", nil), http.StatusOK)
	r = s.As(t, "script", "POST", "/api/v1/facts", map[string]any{"content": "written by a read token"})
	checkProblem(t, r, http.StatusForbidden)
	if !strings.Contains(r.Header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Errorf("a missing scope answers WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
	}
	mc := matrixCases["POST /mcp"]
	mustStatus(t, s.As(t, "script", "POST", "/mcp", mc.body, mc.headers...), http.StatusOK)

	// A PAT never manages PATs.
	checkProblem(t, s.As(t, "script", "POST", "/api/v1/tokens", map[string]any{"name": "child", "scopes": []string{"read"}}), http.StatusForbidden)
	checkProblem(t, s.As(t, "script", "GET", "/api/v1/tokens", nil), http.StatusForbidden)
	checkProblem(t, s.As(t, "script", "DELETE", "/api/v1/tokens/"+id, nil), http.StatusForbidden)

	// Last use is recorded (once: the cadence is a minute) and audited as the first use.
	r = s.As(t, callerAlice, "GET", "/api/v1/tokens", nil)
	r.JSON(t, &list)
	if len(list.Items) != 1 || list.Items[0].LastUsedAt == nil || list.Items[0].LastUsedAt.Before(before.Add(-time.Second)) {
		t.Fatalf("after use: %+v", list.Items)
	}
	count := func(action string) (n int, detail string) {
		for _, e := range s.auditEvents(t, callerAlice, "/api/v1/audit") {
			if e.Action == action && e.Resource == "token/"+id && e.UserID == aliceID {
				n, detail = n+1, e.Detail
			}
		}
		return n, detail
	}
	if n, _ := count("token.create"); n != 1 {
		t.Errorf("%d token.create events; want 1", n)
	}
	if n, detail := count("token.use"); n != 1 || !strings.HasPrefix(detail, "first use") {
		t.Errorf("%d token.use events (%q); want 1, the first use (later ones within a minute are not audited)", n, detail)
	}

	// Bad input: 400, nothing made.
	for _, body := range []map[string]any{
		{"name": "x", "scopes": []string{"admin"}},
		{"name": "x", "scopes": []string{}},
		{"name": "x", "scopes": []string{"read", "read"}},
		{"name": "", "scopes": []string{"read"}},
		{"name": "x", "scopes": []string{"read"}, "expires_in": 366 * 24 * 3600},
		{"name": "x", "scopes": []string{"read"}, "expires_in": -1},
		{"name": "x", "scopes": []string{"read"}, "expires_in": 59},
		{"name": "x", "scopes": []string{"read"}, "user_id": s.UserID(t, callerBob), "owner": "bob"},
	} {
		checkProblem(t, s.As(t, callerAlice, "POST", "/api/v1/tokens", body), http.StatusBadRequest)
	}
	// A year is the most.
	r = s.As(t, callerAlice, "POST", "/api/v1/tokens", map[string]any{"name": "long", "scopes": []string{"read"}, "expires_in": 365 * 24 * 3600})
	mustStatus(t, r, http.StatusCreated)

	// Junk that looks like a PAT is 401, and never echoed.
	for _, junk := range []string{"idf_pat_", "idf_pat_short", raw + "x", raw[:len(raw)-1] + "!", "idf_pat_" + strings.Repeat("A", 43)} {
		r := s.Do(t, "GET", "/api/v1/me", junk, nil)
		checkProblem(t, r, http.StatusUnauthorized)
		if strings.Contains(string(r.Body), junk) {
			t.Errorf("the refusal of %q quotes it", junk)
		}
	}

	// Bob cannot revoke alice's token; alice can, and it stops at once.
	checkProblem(t, s.As(t, callerBob, "DELETE", "/api/v1/tokens/"+id, nil), http.StatusNotFound)
	mustStatus(t, s.As(t, "script", "GET", "/api/v1/me", nil), http.StatusOK)
	mustStatus(t, s.As(t, callerAlice, "DELETE", "/api/v1/tokens/"+id, nil), http.StatusNoContent)
	checkProblem(t, s.As(t, "script", "GET", "/api/v1/me", nil), http.StatusUnauthorized)
	if n, _ := count("token.revoke"); n != 1 {
		t.Errorf("%d token.revoke events; want 1", n)
	}
}
