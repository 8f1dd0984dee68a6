package httpapi

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/devidp"
	"github.com/idflow/idflow/sqlite"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// auditFixture is a Server over a real SQLite store, with the dev issuer's
// tokens accepted and a clock the test moves.
type auditFixture struct {
	s     *Server
	db    *sqlite.DB
	clock *fakeClock
	alice string // alice's bearer token
}

func newAuditFixture(t *testing.T) *auditFixture {
	t.Helper()
	iss, err := devidp.New(devidp.Config{Issuer: "http://127.0.0.1/dev/idp", Audience: "idflow",
		KeyFile: filepath.Join(t.TempDir(), "k.pem")})
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuers: []string{"http://127.0.0.1/dev/idp"}, Audiences: []string{"idflow"}},
		auth.NewStaticKeySet(iss.PublicJWK()))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.SignToken("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "idflow.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := &fakeClock{now: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	s := New(Config{PublicURL: "http://127.0.0.1", APIAudiences: []string{"idflow"}, AuditDenialsPerMinute: 5},
		Deps{Authn: auth.New(auth.Config{Bearer: v}), Store: db, Now: clock.Now})
	return &auditFixture{s: s, db: db, clock: clock, alice: tok}
}

func (f *auditFixture) do(t *testing.T, peer, path string, set func(*http.Request)) int {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.RemoteAddr = peer
	set(r)
	w := httptest.NewRecorder()
	f.s.ServeHTTP(w, r)
	return w.Code
}

// platformAdmin is a Principal and scope that read every tenant's audit.
func platformAdmin(t *testing.T) (idflow.Principal, idflow.AdminScope) {
	t.Helper()
	root := authtest.User("root", "t-ops", "platform-admin")
	scope, err := idflow.NewAdminScope(root, idflow.AdminRoles{Tenant: "admin", Platform: "platform-admin"})
	if err != nil {
		t.Fatal(err)
	}
	return root, scope
}

// rows answers the audit rows, oldest first.
func (f *auditFixture) rows(t *testing.T) []idflow.AuditEvent {
	t.Helper()
	var out []idflow.AuditEvent
	page := idflow.Page{Limit: idflow.MaxPageLimit}
	root, scope := platformAdmin(t)
	for {
		l, err := f.db.AdminListAudit(t.Context(), root, scope, page)
		if err != nil {
			t.Fatal(err)
		}
		out = append(l.Items, out...)
		if l.NextCursor == "" {
			break
		}
		page.Cursor = l.NextCursor
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// TestAnonymousDenialsAreBounded: junk credentials and forged identity
// headers, sent as fast as a client likes, are audited at most N times a
// minute per (peer, reason); the rest are counted, and the next row of the
// key reports them. The resource is the route's pattern, never the junk
// path. Another peer, another reason and a verified caller's denials are
// not held back by the flood, and the chain still verifies.
func TestAnonymousDenialsAreBounded(t *testing.T) {
	f := newAuditFixture(t)
	junkPath := "/api/v1/apps/" + strings.Repeat("j", 8000)
	junk := func(r *http.Request) { r.Header.Set("Authorization", "Bearer not.a.jwt") }
	spoof := func(r *http.Request) { r.Header.Set("X-Authenticated-User", "admin") }
	const attacker, other = "198.51.100.7:40000", "198.51.100.8:40000"

	for i := range 40 {
		// A new source port each time: the peer is the address, not the connection.
		peer := "198.51.100.7:" + string(rune('0'+i%10)) + "000"
		if code := f.do(t, peer, junkPath, junk); code != http.StatusUnauthorized {
			t.Fatalf("junk token: %d", code)
		}
	}
	for range 7 {
		f.do(t, attacker, "/api/v1/me", spoof)
		f.do(t, other, "/api/v1/me", junk)
	}
	for range 12 { // alice (verified) on an admin route: 403, audited every time
		if code := f.do(t, attacker, "/api/v1/admin/users", func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer "+f.alice)
		}); code != http.StatusForbidden {
			t.Fatalf("alice on an admin route: %d", code)
		}
	}
	count := map[string]int{}
	for _, e := range f.rows(t) {
		switch {
		case e.UserID != "":
			count["alice "+e.Action]++
		default:
			count[strings.SplitN(e.Peer, ":", 2)[0]+" "+e.Detail[:min(len(e.Detail), 20)]]++
			if len(e.Resource) > 100 || strings.Contains(e.Resource, "jjj") {
				t.Fatalf("an anonymous row names the path the client chose: %.120q", e.Resource)
			}
		}
	}
	want := map[string]int{
		"198.51.100.7 unauthorized: invali": 5, // 40 sent
		"198.51.100.7 spoofed identity hea": 5, // 7 sent: another reason, its own budget
		"198.51.100.8 unauthorized: invali": 5, // 7 sent: another peer, its own budget
		"alice authorize":                   12,
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%d rows of %q, want %d (all: %v)", count[k], k, n, count)
		}
	}
	if got := f.s.AuditDenialsDropped(); got != 35+2+2 {
		t.Errorf("AuditDenialsDropped = %d, want 39", got)
	}

	// A minute later the key has a new budget; its first row reports what
	// was dropped, once.
	f.clock.Add(time.Minute)
	f.do(t, attacker, "/api/v1/apps/x", junk)
	f.do(t, attacker, "/api/v1/apps/x", junk)
	rows := f.rows(t)
	last, prev := rows[len(rows)-1], rows[len(rows)-2]
	if !strings.Contains(prev.Detail, "and 35 more like it from this peer not audited") {
		t.Errorf("the first row after the window says %q", prev.Detail)
	}
	if strings.Contains(last.Detail, "more like it") || last.Resource != "GET /api/v1/apps/{app_id}" {
		t.Errorf("the next row: %q %q", last.Resource, last.Detail)
	}
	root, scope := platformAdmin(t)
	if n, err := f.db.VerifyAuditChain(t.Context(), root, scope); err != nil || n != len(rows) {
		t.Fatalf("VerifyAuditChain = %d, %v; want %d rows", n, err, len(rows))
	}
}

// TestDenialLimiterMemoryIsBounded: a flood of new peers finds the map
// full and is dropped (counted), expired keys are swept at most every few
// seconds, and then new keys are admitted again.
func TestDenialLimiterMemoryIsBounded(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	l := &denialLimiter{now: clock.Now, perWindow: 1, log: slog.New(slog.DiscardHandler), keys: map[denialKey]*denialCount{}}
	key := func(i int) denialKey { return denialKey{peer: "2001:db8::" + string(rune(i)), action: "a", class: "c"} }
	for i := range maxDenialKeys {
		if ok, _ := l.admit(key(i)); !ok {
			t.Fatalf("key %d refused before the map was full", i)
		}
	}
	if ok, _ := l.admit(key(maxDenialKeys)); ok || len(l.keys) != maxDenialKeys {
		t.Fatalf("a key beyond the bound: admitted %v, %d keys", ok, len(l.keys))
	}
	clock.Add(denialWindow)
	if ok, _ := l.admit(key(maxDenialKeys + 1)); !ok || len(l.keys) != 1 {
		t.Fatalf("after the window: admitted %v, %d keys", ok, len(l.keys))
	}
	if l.dropped.Load() != 1 {
		t.Fatalf("dropped = %d", l.dropped.Load())
	}
}

// TestPeerHost: the per-peer limits count a client, not a connection: the
// port is dropped, and an IPv6 client counts as its /64.
func TestPeerHost(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:443":               "192.0.2.7",
		"[::ffff:192.0.2.7]:80":       "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:1234": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:9":    "2001:db8:1:2::/64",
		"[2001:db8:1:3::1%eth0]:9":    "2001:db8:1:3::/64",
		"not an address":              "not an address",
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = addr
		if got := peerHost(r); got != want {
			t.Errorf("peerHost(%q) = %q, want %q", addr, got, want)
		}
	}
}
