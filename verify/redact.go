package verify

import (
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// A report is meant to be handed to an auditor, so nothing that could act
// as a credential may reach it, the terminal or the JSON: every token the
// verifier was given (and each long piece of one), anything shaped like a
// JWT or a personal access token, Authorization and cookie headers, and the
// bearer.<token> WebSocket subprotocol.

var (
	jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*`)
	patShape = regexp.MustCompile(`idf_pat_[A-Za-z0-9_-]+`)
)

const (
	redactedToken = "[redacted token]"
	redactedJWT   = "[redacted JWT]"
)

// minSecretPiece is the shortest piece of a token that is redacted on its
// own (a JWT's payload or signature echoed without the rest).
const minSecretPiece = 16

type redactor struct {
	secrets []string // longest first
}

func newRedactor(tokens ...string) *redactor {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if len(s) >= minSecretPiece && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, t := range tokens {
		add(t)
		for _, part := range strings.Split(t, ".") {
			add(part)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return &redactor{secrets: out}
}

// String removes every credential from s.
func (r *redactor) String(s string) string {
	for _, sec := range r.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, redactedToken)
		}
	}
	s = jwtShape.ReplaceAllString(s, redactedJWT)
	return patShape.ReplaceAllString(s, redactedToken)
}

// header returns one header's value as it may be shown.
func (r *redactor) header(name, value string) string {
	switch http.CanonicalHeaderKey(name) {
	case "Authorization", "Proxy-Authorization":
		scheme, _, _ := strings.Cut(value, " ")
		return scheme + " [redacted]"
	case "Cookie", "Set-Cookie":
		return "[redacted]"
	case "Sec-Websocket-Protocol":
		parts := strings.Split(value, ",")
		for i, p := range parts {
			p = strings.TrimSpace(p)
			if strings.HasPrefix(p, "bearer.") {
				p = "bearer.[redacted]"
			}
			parts[i] = p
		}
		return strings.Join(parts, ", ")
	}
	return r.String(value)
}

// headers renders h as sorted "Name: value" lines, redacted.
func (r *redactor) headers(h http.Header) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[name] {
			out = append(out, name+": "+r.header(name, v))
		}
	}
	return out
}
