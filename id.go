package idflow

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
)

// Id prefixes, part of the API's JSON (docs/ARCHITECTURE.md). Ids are random, at least 96 bits.
const (
	PrefixApp      = "app_"
	PrefixSession  = "ses_"
	PrefixMessage  = "msg_"
	PrefixAgent    = "agt_"
	PrefixWorkflow = "wf_"
	PrefixRun      = "run_"
	PrefixDocument = "doc_"
	PrefixFact     = "fct_"
	PrefixAudit    = "aud_"
)

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewID returns prefix followed by 128 random bits.
func NewID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return prefix + strings.ToLower(idEncoding.EncodeToString(b[:]))
}

// IsNewID reports whether id has the form NewID(prefix) gives it.
func IsNewID(prefix, id string) bool {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok || len(rest) != 26 {
		return false
	}
	return strings.IndexFunc(rest, func(c rune) bool { return !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') }) < 0
}
