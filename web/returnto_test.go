package web

import "testing"

// TestSafeReturn: return_to is kept only when it is a path on idflow's own
// origin; every trick a browser would turn into another origin (or a path
// that looks like one) falls back to "/".
func TestSafeReturn(t *testing.T) {
	kept := []string{
		"/", "/#/chats", "/#/chats/ses_123", "/static/app.js", "/a/b/", "/api/v1/me?x=1&y=%2F",
		"/#/runs/run_1?tab=events", "/caf%C3%A9", "/café",
	}
	for _, s := range kept {
		if got := SafeReturn(s); got != s {
			t.Errorf("SafeReturn(%q) = %q, want it kept", s, got)
		}
	}
	refused := []string{
		"",
		// Another host, as such or once a browser has rewritten it.
		"//evil.example", "///evil.example", "////evil.example", "/\\evil.example", "\\/evil.example", "\\\\evil.example",
		"/\\/evil.example", "/%5Cevil.example", "/%5C%5Cevil.example",
		"/%2F/evil.example", "/%2f%2fevil.example", "%2F%2Fevil.example",
		"/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "/\t\\evil.example", "\t//evil.example",
		"/%09/evil.example", "/%0a/evil.example", "/%00/evil.example",
		"/.//evil.example", "/./evil", "/../evil", "/a/../../evil", "/%2e/%2fevil", "/%2E%2E/evil", "/.%2e/evil",
		"/a//b", "/a%20b", " /evil", "/ /evil", "/evil ", "/\u00a0/evil.example", "/\u3000/evil", "/\u200b/evil", "/\u2028/evil",
		"/\ufeff/evil", "/\x7f/evil", "/\u0085/evil", "/\x01evil", "/\xff",
		// Schemes, userinfo, opaque URLs.
		"https://evil.example", "https:evil.example", "http:/evil.example", "javascript:alert(1)",
		"JavaScript:alert(1)", "data:text/html,x", "//user@evil.example", "https://idflow@evil.example",
		"evil.example", "@evil.example", "?x=/", "#/chats",
		// Absurd lengths.
		"/" + string(make([]byte, maxReturnTo)),
	}
	for _, s := range refused {
		if got := SafeReturn(s); got != "/" {
			t.Errorf("SafeReturn(%q) = %q, want \"/\"", s, got)
		}
	}
}
