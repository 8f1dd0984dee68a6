package idflow

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Audit outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeDenied  = "denied"
	OutcomeFailure = "failure"
)

// AuditEvent records one write or one denial. Hash chains it to the event
// before it, so an edited or deleted row shows.
type AuditEvent struct {
	ID        string    `json:"id"`
	Seq       int64     `json:"seq"`
	At        time.Time `json:"at"`
	UserID    string    `json:"user_id"` // the actor; empty when nobody was authenticated
	TenantID  string    `json:"tenant_id"`
	Action    string    `json:"action"`
	Resource  string    `json:"resource"`
	Outcome   string    `json:"outcome"`
	RequestID string    `json:"request_id"`
	Peer      string    `json:"peer"`
	Detail    string    `json:"detail,omitempty"`
	PrevHash  string    `json:"prev_hash"`
	Hash      string    `json:"hash"`
}

// AuditStore keeps the hash-chained audit trail.
type AuditStore interface {
	// RecordAudit appends e to the hash chain. e.UserID may be empty for a
	// denial before anyone was authenticated.
	RecordAudit(ctx context.Context, e AuditEvent) (AuditEvent, error)
	ListAudit(ctx context.Context, p Principal, page Page) (List[AuditEvent], error)
	// AdminListAudit answers the events whose actor's tenant is the scope's
	// (every event for a platform admin), newest first.
	AdminListAudit(ctx context.Context, admin Principal, scope AdminScope, page Page) (List[AuditEvent], error)
	// VerifyAuditChain checks the links of the whole chain and recomputes
	// the hash of every event of the scope (AuditChainCheck); it returns the
	// number of the scope's events verified, or an error naming the first
	// broken link.
	VerifyAuditChain(ctx context.Context, admin Principal, scope AdminScope) (int, error)
}

// AuditHash is the hash of e in the audit chain: SHA-256 over a
// length-prefixed encoding of its fields and the previous event's hash.
// Every store backend computes it the same way, so a chain can be verified
// (or migrated) independently of where it is kept.
func AuditHash(e AuditEvent) string {
	h := sha256.New()
	io.WriteString(h, "idflow-audit-v1\n")
	for _, f := range []string{
		strconv.FormatInt(e.Seq, 10),
		e.At.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		e.UserID, e.TenantID, e.Action, e.Resource, e.Outcome, e.RequestID, e.Peer, e.Detail,
		e.PrevHash,
	} {
		fmt.Fprintf(h, "%d:%s\n", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Bounds of the audit fields, in bytes. A row must stay small whatever a
// request carried: a junk token's error, a long path, a forged header.
const (
	maxAuditIdentity = 512  // user id, tenant id, request id
	maxAuditAction   = 128  // action, outcome
	maxAuditResource = 512  // what was acted on
	maxAuditPeer     = 128  // host:port of the TCP peer
	maxAuditDetail   = 1024 // why
)

// Bounded returns e with every field within its bound, as both stores write
// it (their RecordAudit calls this before hashing). Text is cut at a rune
// boundary and ends with "…" when cut; invalid UTF-8 and NUL (which
// PostgreSQL's text refuses) become U+FFFD. An identity field (user,
// tenant, request id) is never cut — two long ids must not become one — but
// replaced, when too long or not clean text, by "sha256:" and the hex of its
// SHA-256.
func (e AuditEvent) Bounded() AuditEvent {
	e.UserID = boundIdentity(e.UserID)
	e.TenantID = boundIdentity(e.TenantID)
	e.RequestID = boundIdentity(e.RequestID)
	e.Action = boundText(e.Action, maxAuditAction)
	e.Outcome = boundText(e.Outcome, maxAuditAction)
	e.Resource = boundText(e.Resource, maxAuditResource)
	e.Peer = boundText(e.Peer, maxAuditPeer)
	e.Detail = boundText(e.Detail, maxAuditDetail)
	return e
}

func boundIdentity(s string) string {
	if len(s) <= maxAuditIdentity && utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func boundText(s string, limit int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if len(s) <= limit {
		return s
	}
	const ellipsis = "…"
	cut := limit - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// AuditChainCheck verifies the audit hash chain, the same way on every
// store backend, in two passes over one consistent snapshot:
//
//  1. Link, for every event in seq order: its place in the chain (seq,
//     prev_hash, hash), which names no actor and holds no content. A gap in
//     seq (a removed event) or a prev_hash that is not the previous hash (a
//     reordered or replaced event) breaks the chain.
//  2. Event, for the events of the admin's scope in seq order: the whole
//     row, whose hash is recomputed (an edited event).
//
// A tenant admin's check thus covers the links of the whole chain and the
// contents of their own tenant's events, and reads no other tenant's
// content; a platform admin's covers every event. Head, when the backend
// keeps the chain head apart from the events, also finds a cut-off tail.
// The zero value is ready to use.
type AuditChainCheck struct {
	links int64  // events linked so far
	last  string // hash of the last linked event; "" = the genesis hash

	broken  int64 // seq of the first break; 0 = none yet
	reason  error
	checked int // events of the scope whose hash matched, before the break
}

// AuditGenesisHash is the prev_hash of the first event of the chain.
const AuditGenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

func (c *AuditChainCheck) prev() string {
	if c.links == 0 {
		return AuditGenesisHash
	}
	return c.last
}

// Link records the next event's place in the chain. Calls come in seq
// order, all before the first Event.
func (c *AuditChainCheck) Link(seq int64, prevHash, hash string) {
	if c.broken != 0 {
		return
	}
	want := c.links + 1
	switch {
	case seq != want:
		c.breakAt(want, Errorf(EINTERNAL, "audit chain broken at seq %d: event missing", want))
	case prevHash != c.prev():
		c.breakAt(seq, Errorf(EINTERNAL, "audit chain broken at seq %d: prev_hash does not match", seq))
	default:
		c.links, c.last = seq, hash
	}
}

// Head checks the newest linked event against the chain head (its seq and
// hash) that the backend keeps apart from the events. Call it after the
// last Link.
func (c *AuditChainCheck) Head(seq int64, hash string) {
	if c.broken == 0 && (c.links != seq || c.prev() != hash) {
		c.breakAt(c.links+1, Errorf(EINTERNAL, "audit chain broken after seq %d: the chain head names seq %d", c.links, seq))
	}
}

// Event recomputes the hash of one event of the scope. Calls come in seq
// order, after every Link.
func (c *AuditChainCheck) Event(e AuditEvent) {
	if c.broken != 0 && e.Seq >= c.broken {
		return
	}
	if AuditHash(e) != e.Hash {
		c.breakAt(e.Seq, Errorf(EINTERNAL, "audit chain broken at seq %d: hash does not match", e.Seq))
		return
	}
	c.checked++
}

// Result answers how many events of the scope were verified before the
// first break, and the break (an EINTERNAL error naming its seq), if any.
func (c *AuditChainCheck) Result() (int, error) { return c.checked, c.reason }

func (c *AuditChainCheck) breakAt(seq int64, reason error) {
	if c.broken == 0 || seq < c.broken {
		c.broken, c.reason = seq, reason
	}
}

// BackgroundAudits is a set of audit writes that run beside the work that
// follows them, and that their caller waits for before it answers. An
// agent turn uses one for its tool calls: each call's record is written
// while the model reads the call's result, and the turn is stored and
// answered only once every record of its calls is committed — so a turn
// never ends, in success or failure, with a tool call missing from the
// trail, and the write costs the turn no time of its own (on PostgreSQL a
// commit is a network round trip and a WAL flush).
type BackgroundAudits struct{ wg sync.WaitGroup }

type backgroundAuditsKey struct{}

// WithBackgroundAudits answers ctx under which AuditWrite runs its writes
// in the background, and the set they are counted in.
func WithBackgroundAudits(ctx context.Context) (context.Context, *BackgroundAudits) {
	b := &BackgroundAudits{}
	return context.WithValue(ctx, backgroundAuditsKey{}, b), b
}

// Wait returns when every write begun under the set's context has ended.
func (b *BackgroundAudits) Wait() { b.wg.Wait() }

// AuditWrite runs write — one audit record's write, which must not depend
// on ctx being alive — now, or in the background when ctx carries a
// BackgroundAudits, counted there.
func AuditWrite(ctx context.Context, write func()) {
	b, ok := ctx.Value(backgroundAuditsKey{}).(*BackgroundAudits)
	if !ok {
		write()
		return
	}
	b.wg.Go(write)
}
