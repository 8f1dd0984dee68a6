package idflow

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

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
