package idflow

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
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
