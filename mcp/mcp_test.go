package mcp

import (
	"errors"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
)

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

// count (for tests) is how many live sessions owner holds.
func (t *sessions) count(owner string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if u := t.users[owner]; u != nil {
		return len(u.live)
	}
	return 0
}

// has (for tests) reports whether session id is in the table.
func (t *sessions) has(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.byID[id]
	return ok
}

// fakeSession stands in for an SDK session in the session table.
type fakeSession struct {
	id     string
	closed chan struct{}
	once   sync.Once
}

func newFakeSession(id string) *fakeSession {
	return &fakeSession{id: id, closed: make(chan struct{})}
}

func (f *fakeSession) ID() string   { return f.id }
func (f *fakeSession) Close() error { f.once.Do(func() { close(f.closed) }); return nil }
func (f *fakeSession) Wait() error  { <-f.closed; return nil }

// clock is a manual clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }
func (c *clock) tick()          { c.t = c.t.Add(time.Second) }

// TestMCPSessionsCloseLeastRecentlyUsedIdle: a user at the limit who opens
// one more session loses the least recently used idle one — not a busy
// one, not the oldest by creation, not another user's.
func TestMCPSessionsCloseLeastRecentlyUsedIdle(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	tab := newSessions(3, c.now)
	a, b, d := newFakeSession("a"), newFakeSession("b"), newFakeSession("d")
	for _, ss := range []*fakeSession{a, b, d} {
		tab.add(ss, "alice")
		c.tick()
	}
	tab.add(newFakeSession("bob-1"), "bob")
	c.tick()
	// a, the oldest, is used again; d is busy with a stream.
	done, err := tab.begin("a", "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	c.tick()
	done()
	c.tick()
	if _, err := tab.begin("d", "alice", true); err != nil {
		t.Fatal(err)
	}

	evicted, release, err := tab.reserve("alice")
	if err != nil {
		t.Fatalf("reserve at the limit with idle sessions: %v", err)
	}
	defer release()
	if evicted == nil || evicted.ss != b {
		t.Fatalf("evicted %+v; want the least recently used idle session b", evicted)
	}
	if tab.has("b") || !tab.has("a") || !tab.has("d") || !tab.has("bob-1") {
		t.Fatal("the eviction took the wrong sessions out of the table")
	}
	if _, err := tab.begin("b", "alice", false); !errors.Is(err, errSessionNotFound) {
		t.Fatalf("a request on the evicted session: %v; want not found", err)
	}
	if tab.count("alice") != 2 || tab.count("bob") != 1 {
		t.Fatalf("alice %d, bob %d sessions; want 2 and 1", tab.count("alice"), tab.count("bob"))
	}
}

// TestMCPSessionsRefuseWhenAllBusy: at the limit with every session busy (a
// request or stream open, or still being initialized), a new session is
// refused with 429; another user is not affected.
func TestMCPSessionsRefuseWhenAllBusy(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	tab := newSessions(2, c.now)
	tab.add(newFakeSession("a"), "alice")
	done, err := tab.begin("a", "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	_, release, err := tab.reserve("alice") // an initialize under way holds a slot
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tab.reserve("alice"); !errors.Is(err, errTooManySessions) || idflow.ErrorCode(err) != idflow.ERATELIMIT {
		t.Fatalf("reserve with every slot busy: %v; want %v (429)", err, errTooManySessions)
	}
	if _, r, err := tab.reserve("bob"); err != nil {
		t.Fatalf("bob, with no sessions, was refused: %v", err)
	} else {
		r()
	}
	release()
	release() // idempotent
	if evicted, r, err := tab.reserve("alice"); err != nil || evicted != nil {
		t.Fatalf("reserve after the initialization ended: evicted %v, %v; want a free slot", evicted, err)
	} else {
		r()
	}
	done()
	tab.add(newFakeSession("b"), "alice")
	if evicted, r, err := tab.reserve("alice"); err != nil || evicted == nil {
		t.Fatalf("reserve at the limit once a is idle again: evicted %v, %v", evicted, err)
	} else {
		r()
	}
}

// TestMCPSessionsStreamLimit: a user may hold at most max open GET streams,
// across their sessions.
func TestMCPSessionsStreamLimit(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	tab := newSessions(2, c.now)
	tab.add(newFakeSession("a"), "alice")
	tab.add(newFakeSession("b"), "alice")
	tab.add(newFakeSession("c"), "bob")
	d1, err := tab.begin("a", "alice", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tab.begin("b", "alice", true); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.begin("a", "alice", true); !errors.Is(err, errTooManyStreams) || idflow.ErrorCode(err) != idflow.ERATELIMIT {
		t.Fatalf("a third stream: %v; want %v", err, errTooManyStreams)
	}
	if d, err := tab.begin("a", "alice", false); err != nil {
		t.Fatalf("a POST with the streams at the limit: %v", err)
	} else {
		d()
	}
	if _, err := tab.begin("c", "bob", true); err != nil {
		t.Fatalf("bob's stream: %v", err)
	}
	d1()
	d1() // idempotent
	if _, err := tab.begin("a", "alice", true); err != nil {
		t.Fatalf("a stream after one closed: %v", err)
	}
}

// TestMCPSessionsOwnership: another user's session and an unknown one are
// refused with the same answer; the owner's requests pass.
func TestMCPSessionsOwnership(t *testing.T) {
	tab := newSessions(20, time.Now)
	tab.add(newFakeSession("a"), "alice")
	_, foreign := tab.begin("a", "bob", false)
	_, unknown := tab.begin("zzz", "alice", false)
	if !errors.Is(foreign, errSessionForeign) || !errors.Is(unknown, errSessionNotFound) {
		t.Fatalf("foreign %v, unknown %v", foreign, unknown)
	}
	if idflow.ErrorCode(foreign) != idflow.ErrorCode(unknown) || idflow.ErrorMessage(foreign) != idflow.ErrorMessage(unknown) {
		t.Fatalf("another user's session (%v) and an unknown one (%v) answer differently", foreign, unknown)
	}
	if d, err := tab.begin("a", "alice", false); err != nil {
		t.Fatalf("the owner's request: %v", err)
	} else {
		d()
	}
}

// TestMCPSessionsFollowTheSDK: a session the SDK closes (idle timeout, DELETE,
// shutdown) leaves the table and frees its slot.
func TestMCPSessionsFollowTheSDK(t *testing.T) {
	tab := newSessions(1, time.Now)
	a := newFakeSession("a")
	tab.add(a, "alice")
	if d, err := tab.begin("a", "alice", true); err != nil {
		t.Fatal(err)
	} else {
		defer d()
	}
	if _, _, err := tab.reserve("alice"); !errors.Is(err, errTooManySessions) {
		t.Fatalf("reserve with the only session streaming: %v", err)
	}
	_ = a.Close()
	deadline := time.Now().Add(10 * time.Second)
	for tab.has("a") {
		if time.Now().After(deadline) {
			t.Fatal("a closed session stayed in the table for 10s")
		}
		time.Sleep(time.Millisecond)
	}
	if _, r, err := tab.reserve("alice"); err != nil {
		t.Fatalf("reserve after the session closed: %v", err)
	} else {
		r()
	}
}

// TestMCPRetryWriter: the SDK's priming event gets the retry field; a GET
// stream of a 2025-11-25 client gets it ahead of the SDK's first bytes;
// other responses pass untouched.
func TestMCPRetryWriter(t *testing.T) {
	const prime = "event: prime\nid: s1_0\ndata: \n\n"
	for _, c := range []struct {
		name, contentType, first, want string
		status                         int
		getRetry                       bool
	}{
		{"POST priming event", "text/event-stream", prime, "event: prime\nretry: 2000\nid: s1_0\ndata: \n\n", 200, false},
		{"POST without priming (older client)", "text/event-stream", "event: message\ndata: {}\n\n", "event: message\ndata: {}\n\n", 200, false},
		{"GET of a 2025-11-25 client", "text/event-stream", ": ok\n\n", "retry: 2000\n\n: ok\n\n", 200, true},
		{"GET of an older client", "text/event-stream", ": ok\n\n", ": ok\n\n", 200, false},
		{"JSON", "application/json", `{"jsonrpc":"2.0"}`, `{"jsonrpc":"2.0"}`, 200, true},
		{"an error", "text/event-stream", prime, prime, 404, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			rr := httptest.NewRecorder()
			w := &retryWriter{ResponseWriter: rr, retry: 2 * time.Second, getRetry: c.getRetry}
			w.Header().Set("Content-Type", c.contentType)
			w.WriteHeader(c.status)
			if n, err := w.Write([]byte(c.first)); err != nil || n != len(c.first) {
				t.Fatalf("Write = %d, %v; want %d", n, err, len(c.first))
			}
			if _, err := w.Write([]byte(prime)); err != nil {
				t.Fatal(err)
			}
			if got, want := rr.Body.String(), c.want+prime; got != want {
				t.Fatalf("body %q; want %q", got, want)
			}
		})
	}
}
