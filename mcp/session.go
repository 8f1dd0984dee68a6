package mcp

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
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

// sessionOwners maps live session ids to their owners.
type sessionOwners struct {
	mu        sync.Mutex
	owners    map[string]sessionOwner
	nextSweep int
	sweeping  bool
}

type sessionOwner struct {
	key   string
	added time.Time
}

func newSessionOwners() *sessionOwners {
	return &sessionOwners{owners: map[string]sessionOwner{}, nextSweep: 1024}
}

func (o *sessionOwners) owner(id string) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	so, ok := o.owners[id]
	return so.key, ok
}

// add records a new session. Sessions the SDK closed by itself (idle
// timeout) are forgotten by a sweep against live() whenever the map has
// doubled since the last one, so it stays bounded by the live sessions.
// The sweep runs on its own goroutine: add is called while the SDK writes
// a response, and must not take the SDK's locks from there.
func (o *sessionOwners) add(id, owner string, live func() map[string]bool) {
	o.mu.Lock()
	o.owners[id] = sessionOwner{key: owner, added: time.Now()}
	sweep := len(o.owners) >= o.nextSweep && !o.sweeping
	if sweep {
		o.sweeping = true
	}
	o.mu.Unlock()
	if sweep {
		go o.sweep(live)
	}
}

func (o *sessionOwners) sweep(live func() map[string]bool) {
	before := time.Now()
	alive := live()
	o.mu.Lock()
	defer o.mu.Unlock()
	for sid, so := range o.owners {
		if !alive[sid] && so.added.Before(before) {
			delete(o.owners, sid)
		}
	}
	o.nextSweep = max(1024, 2*len(o.owners))
	o.sweeping = false
}

func (o *sessionOwners) remove(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.owners, id)
}

func (o *sessionOwners) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.owners)
}

// recorder calls onHeader once, just before the response head is written.
type recorder struct {
	http.ResponseWriter
	onHeader func(status int, h http.Header)
	wrote    bool
}

func (w *recorder) WriteHeader(status int) {
	if !w.wrote {
		w.wrote = true
		w.onHeader(status, w.Header())
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *recorder) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush keeps SSE streaming when the SDK asserts http.Flusher.
func (w *recorder) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
