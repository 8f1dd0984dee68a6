package mcp

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/idflow/idflow"
)

// sessionHeader carries the MCP session id (Streamable HTTP transport).
const sessionHeader = "Mcp-Session-Id"

// ownerKey is who owns a session: the user, not the token, so a refreshed
// token of the same user keeps working. Issuer and tenant are part of it:
// two issuers may hand out the same sub.
func ownerKey(p idflow.Principal) string {
	return p.Issuer + "\x00" + p.TenantID + "\x00" + p.UserID
}

// sessionDigest names a session in logs and the audit trail without
// spelling out its id.
func sessionDigest(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:8])
}

// Refusals of the session table; ServeMCP turns them into HTTP answers.
var (
	// Another user's session answers exactly like an unknown one; only
	// the audit tells them apart.
	errSessionNotFound = idflow.NotFound("MCP session")
	errSessionForeign  = idflow.NotFound("MCP session")
	errTooManySessions = idflow.Errorf(idflow.ERATELIMIT, "too many MCP sessions are busy; end one (DELETE /mcp) or retry later")
	errTooManyStreams  = idflow.Errorf(idflow.ERATELIMIT, "too many open MCP event streams; close one or retry later")
)

// sessions is the table of live MCP sessions: who owns each, and the
// per-user limits. A user holds at most max sessions (counting sessions
// being initialized) and max open GET streams. A new session beyond the
// limit closes the user's least recently used idle session — one with no
// request or stream open on it; when every one is busy, it is refused (429).
// Sessions leave the table when the SDK closes them (idle timeout, DELETE,
// eviction, shutdown), so the counts follow the SDK's own state.
type sessions struct {
	max int
	now func() time.Time

	mu    sync.Mutex
	byID  map[string]*session
	users map[string]*userSessions
}

type session struct {
	id, owner string
	ss        liveSession
	open      int       // requests and streams under way on it
	last      time.Time // when a request last began or ended on it
}

// liveSession is what the table needs of an SDK session (*sdk.ServerSession).
type liveSession interface {
	ID() string
	Close() error
	Wait() error // returns once the session is closed
}

type userSessions struct {
	live    map[string]*session
	pending int // initializations under way: each holds a slot
	streams int // open GET streams
}

func newSessions(max int, now func() time.Time) *sessions {
	return &sessions{max: max, now: now, byID: map[string]*session{}, users: map[string]*userSessions{}}
}

// user returns owner's entry, creating it. Call with mu held.
func (t *sessions) user(owner string) *userSessions {
	u := t.users[owner]
	if u == nil {
		u = &userSessions{live: map[string]*session{}}
		t.users[owner] = u
	}
	return u
}

// forget drops owner's entry once nothing of it is left. Call with mu held.
func (t *sessions) forget(owner string, u *userSessions) {
	if len(u.live) == 0 && u.pending == 0 && u.streams == 0 {
		delete(t.users, owner)
	}
}

// reserve holds a slot for a session owner is about to open. When owner is
// at the limit, the least recently used idle session is taken out of the
// table and returned for the caller to close (outside the lock). release
// gives the slot back once the request that may open the session is over;
// by then a session it opened is in the table on its own (add).
func (t *sessions) reserve(owner string) (evicted *session, release func(), err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.user(owner)
	if len(u.live)+u.pending >= t.max {
		for _, s := range u.live {
			if s.open == 0 && (evicted == nil || s.last.Before(evicted.last)) {
				evicted = s
			}
		}
		if evicted == nil {
			t.forget(owner, u)
			return nil, nil, errTooManySessions
		}
		t.removeLocked(evicted.id)
	}
	u.pending++
	var once sync.Once
	return evicted, func() {
		once.Do(func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			u := t.user(owner)
			u.pending--
			t.forget(owner, u)
		})
	}, nil
}

// add records a session the SDK has just opened for owner, and forgets it
// when the SDK closes it.
func (t *sessions) add(ss liveSession, owner string) {
	id := ss.ID()
	t.mu.Lock()
	if _, known := t.byID[id]; known {
		t.mu.Unlock()
		return // a repeated initialize on the same session
	}
	s := &session{id: id, owner: owner, ss: ss, last: t.now()}
	t.byID[id] = s
	t.user(owner).live[id] = s
	t.mu.Unlock()
	go func() {
		_ = ss.Wait()
		t.remove(id)
	}()
}

// begin marks a request on session id by owner; done ends it. A GET is an
// open stream and counts against the user's stream limit.
func (t *sessions) begin(id, owner string, stream bool) (done func(), err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.byID[id]
	switch {
	case !ok:
		return nil, errSessionNotFound
	case s.owner != owner:
		return nil, errSessionForeign
	}
	u := t.user(owner)
	if stream {
		if u.streams >= t.max {
			return nil, errTooManyStreams
		}
		u.streams++
	}
	s.open++
	s.last = t.now()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			s.open--
			s.last = t.now()
			u := t.user(owner)
			if stream {
				u.streams--
			}
			t.forget(owner, u)
		})
	}, nil
}

func (t *sessions) remove(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocked(id)
}

func (t *sessions) removeLocked(id string) {
	s, ok := t.byID[id]
	if !ok {
		return
	}
	delete(t.byID, id)
	if u := t.users[s.owner]; u != nil {
		delete(u.live, id)
		t.forget(s.owner, u)
	}
}

// protocolPriming is the first protocol version whose clients expect SSE
// priming events and honour retry (SEP-1699, transport spec 2025-11-25).
const protocolPriming = "2025-11-25"

// primeEvent starts the priming event the SDK writes first on a POST's SSE
// stream when it has an event store and the client speaks 2025-11-25 or
// later.
var primeEvent = []byte("event: prime\n")

// retryWriter adds to the SDK's SSE responses the retry field the
// 2025-11-25 transport asks for: the SDK sends the priming event, but no
// retry. On a POST stream the field joins the SDK's priming event (which the
// SDK sends to 2025-11-25 clients only); on a GET stream (which the server
// closes when the token that opened it expires) it is a field of its own
// ahead of the SDK's first bytes, for 2025-11-25 clients only too: older
// ones may not expect anything but messages.
type retryWriter struct {
	http.ResponseWriter
	retry    time.Duration
	getRetry bool // a GET from a client that honours retry
	status   int
	wrote    bool // the head
	body     bool // the first body bytes
}

func (w *retryWriter) WriteHeader(status int) {
	if !w.wrote {
		w.wrote = true
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *retryWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.body {
		return w.ResponseWriter.Write(b)
	}
	w.body = true
	if w.status != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream") {
		return w.ResponseWriter.Write(b)
	}
	field := "retry: " + strconv.FormatInt(w.retry.Milliseconds(), 10) + "\n"
	var out []byte
	switch {
	case bytes.HasPrefix(b, primeEvent):
		out = append(append(append([]byte{}, primeEvent...), field...), b[len(primeEvent):]...)
	case w.getRetry:
		out = append([]byte(field+"\n"), b...)
	default:
		return w.ResponseWriter.Write(b)
	}
	if _, err := w.ResponseWriter.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Flush keeps SSE streaming when the SDK asserts http.Flusher.
func (w *retryWriter) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *retryWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// takeUser takes every live session of the user (tenant, user id) out of
// the table, whichever issuer's, and answers them to be closed.
func (t *sessions) takeUser(tenantID, userID string) []*session {
	suffix := "\x00" + tenantID + "\x00" + userID
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*session
	for owner, u := range t.users {
		if !strings.HasSuffix(owner, suffix) || strings.Count(owner, "\x00") != 2 {
			continue
		}
		for _, s := range u.live {
			out = append(out, s)
		}
	}
	for _, s := range out {
		t.removeLocked(s.id)
	}
	return out
}
