package web

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxReturnTo bounds return_to; a page of the UI needs far less.
const maxReturnTo = 2048

// SafeReturn answers return_to when it is a path on idflow's own origin,
// and "/" otherwise. A browser rewrites a URL before it follows it: it
// strips tabs and newlines, reads "\" as "/", resolves "." and ".." (and
// their %2e forms) and takes "//host" as another host. So the value is
// parsed, and refused when it, or its decoded path, has a scheme, a host,
// userinfo, a backslash, a control, space or invisible character, a "//"
// anywhere in the path, or a dot segment — before or after decoding, so
// "/%2F/evil" and "/.//evil" are refused too. Nothing a UI page needs is lost.
func SafeReturn(s string) string {
	if !safeReturn(s) {
		return "/"
	}
	return s
}

func safeReturn(s string) bool {
	if s == "" || len(s) > maxReturnTo || !strings.HasPrefix(s, "/") || !cleanText(s) {
		return false
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return false
	}
	for _, p := range []string{u.EscapedPath(), u.Path} { // as sent, and decoded
		if !strings.HasPrefix(p, "/") || !cleanText(p) || !cleanSegments(p) {
			return false
		}
	}
	return true
}

// cleanText refuses a backslash and any rune a browser strips, rewrites or
// does not show: controls, white space (ASCII space included) and format
// characters; and bytes that are not UTF-8.
func cleanText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c == '\\' || c == ' ' || !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}

// cleanSegments refuses an empty segment inside the path ("//", which a
// browser may take for a host) and dot segments, which it resolves.
func cleanSegments(p string) bool {
	segs := strings.Split(p[1:], "/")
	for i, seg := range segs {
		if seg == "" && i < len(segs)-1 {
			return false
		}
		switch strings.ToLower(seg) {
		case ".", "..", "%2e", "%2e%2e", ".%2e", "%2e.":
			return false
		}
	}
	return true
}
