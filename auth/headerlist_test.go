package auth

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// Role and group names may contain commas ("Sales, EMEA"), quotes and
// backslashes ("CONTOSO\Ops"): /auth/validate writes them with FormatList
// and idflow's proxy reader (ParseList) reads back the very same names.
func TestHeaderListRoundTrip(t *testing.T) {
	cases := [][]string{
		{},
		{"reader"},
		{"reader", "admin"},
		{"Sales, EMEA", "admin"},
		{`say "hi"`, `CONTOSO\Ops`, `\`, `"`, `,`, `""`, `\"`},
		{" padded ", "\ttabbed", "inner space", "a,b,c"},
		{"Développeurs", "営業, 東京", "🙂,🙃"},
		{"admin", "admin"}, // duplicates are kept: not this codec's business
	}
	for _, names := range cases {
		enc := FormatList(names)
		got, err := ParseList(enc)
		if err != nil {
			t.Fatalf("%q → %q: %v", names, enc, err)
		}
		if !slices.Equal(got, names) {
			t.Fatalf("%q → %q → %q", names, enc, got)
		}
	}
	// Simple names stay the plain comma list they always were.
	if enc := FormatList([]string{"reader", "admin", "g-eng"}); enc != "reader,admin,g-eng" {
		t.Fatalf("simple names encoded as %q", enc)
	}
	if enc := FormatList([]string{"Sales, EMEA", `a"b`, `C\D`}); enc != `"Sales, EMEA","a\"b","C\\D"` {
		t.Fatalf("encoded as %q", enc)
	}
	// Names no header can carry are left out, never smuggled.
	if enc := FormatList([]string{"ok", "bad\r\nX-Authenticated-User: admin", "nul\x00", "", "fine"}); enc != "ok,fine" {
		t.Fatalf("encoded as %q", enc)
	}
}

func TestParseList(t *testing.T) {
	for in, want := range map[string][]string{
		"":                        {},
		"   ":                     {},
		"reader, admin,,":         {"reader", "admin"},
		" a ,\tb\t":               {"a", "b"},
		`"Sales, EMEA" , admin`:   {"Sales, EMEA", "admin"},
		`CONTOSO\Ops`:             {`CONTOSO\Ops`}, // bare: a backslash is literal
		`"CONTOSO\\Ops"`:          {`CONTOSO\Ops`},
		`"a\"b"`:                  {`a"b`},
		`"\a\b"`:                  {"ab"}, // quoted-pair: any escaped char is itself
		`"",x`:                    {"x"},
		`a b, c d`:                {"a b", "c d"},
		"Développeurs,\"営業, 東京\"": {"Développeurs", "営業, 東京"},
	} {
		got, err := ParseList(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseList(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`"unterminated`, `"a"b`, `"a" b`, `a"b`, `admin, "x`, `"trailing\`, `x, "a""b"`} {
		if got, err := ParseList(bad); err == nil {
			t.Errorf("ParseList(%q) = %q; want an error", bad, got)
		}
	}
}

func FuzzHeaderList(f *testing.F) {
	for _, s := range []string{"", "a", "a,b", `"a,b",c`, `"x\"y"`, `"`, `\`, "a\x00b", " , ,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Arbitrary input never panics; whatever parses re-encodes to a
		// value that parses to the same names.
		if got, err := ParseList(s); err == nil {
			again, err := ParseList(FormatList(got))
			if err != nil || !slices.Equal(again, slices.DeleteFunc(slices.Clone(got), func(n string) bool { return strings.ContainsFunc(n, isCTL) })) {
				t.Fatalf("%q → %q → %q (%v)", s, got, again, err)
			}
		}
		// Any names, split from s on NUL, survive FormatList → ParseList
		// (less those no header can carry).
		names := strings.Split(s, "\x00")
		want := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "" || strings.ContainsFunc(n, isCTL) })
		got, err := ParseList(FormatList(names))
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("%q → %q → %q (%v)", names, FormatList(names), got, err)
		}
	})
}

// A trusted proxy's role and group headers are read with ParseList: names
// with commas arrive whole, and a malformed list is refused, never
// half-read.
func TestProxyRolesWithCommas(t *testing.T) {
	f := newAuthFixture(t, nil)
	r := request(trustedPeer, h("X-Authenticated-User", "alice",
		"X-Authenticated-Roles", FormatList([]string{"reader", "Sales, EMEA"}),
		"X-Authenticated-Groups", `"CONTOSO\\Ops",eng`))
	p := mustAuth(t, f.a, r, nil)
	if !slices.Equal(p.Roles, []string{"reader", "Sales, EMEA"}) || !slices.Equal(p.Groups, []string{`CONTOSO\Ops`, "eng"}) {
		t.Fatalf("roles %q groups %q", p.Roles, p.Groups)
	}
	for _, hdr := range []string{"X-Authenticated-Roles", "X-Authenticated-Groups"} {
		err := mustNotAuth(t, f.a, request(trustedPeer, h("X-Authenticated-User", "alice", hdr, `admin, "Sales`)), nil, idflow.EUNAUTHORIZED)
		if msg := idflow.ErrorMessage(err); !strings.Contains(msg, hdr) || !strings.Contains(msg, "not a list") {
			t.Fatalf("message %q", msg)
		}
	}
}

// A repeated identity header is answered with a message saying so — not
// "invalid token", which sends an operator looking at the wrong thing.
func TestRepeatedIdentityHeaderSaysSo(t *testing.T) {
	f := newAuthFixture(t, nil)
	assertion, err := f.signer.SignAssertion(authtest.User("alice", "t-one"), proxyAudience)
	if err != nil {
		t.Fatal(err)
	}
	bearer := "Bearer " + f.iss.Sign(f.iss.OIDC("alice"))
	for name, tc := range map[string]struct {
		peer   string
		hdrs   map[string][]string
		header string
	}{
		"user":          {trustedPeer, h("X-Authenticated-User", "alice", "X-Authenticated-User", "admin"), "X-Authenticated-User"},
		"roles":         {trustedPeer, h("X-Authenticated-User", "alice", "X-Authenticated-Roles", "a", "X-Authenticated-Roles", "b"), "X-Authenticated-Roles"},
		"tenant":        {trustedPeer, h("X-Authenticated-User", "alice", "X-Authenticated-Tenant", "t", "X-Authenticated-Tenant", "u"), "X-Authenticated-Tenant"},
		"assertion":     {trustedPeer, h(assertionHdr, assertion, assertionHdr, assertion), assertionHdr},
		"Authorization": {untrustedPeer, h("Authorization", bearer, "Authorization", bearer), "Authorization"},
	} {
		t.Run(name, func(t *testing.T) {
			err := mustNotAuth(t, f.a, request(tc.peer, tc.hdrs), nil, idflow.EUNAUTHORIZED)
			msg := idflow.ErrorMessage(err)
			if !errors.Is(err, errRepeatedHeader) || !strings.Contains(msg, tc.header) || !strings.Contains(msg, "more than once") ||
				strings.Contains(msg, "invalid token") {
				t.Fatalf("message %q (%v)", msg, err)
			}
		})
	}
	// Empty and missing say that, too.
	for hdrs, want := range map[string]map[string][]string{
		"the X-Authenticated-User header is empty":   h("X-Authenticated-User", ""),
		"the X-Authenticated-User header is missing": h("X-Authenticated-Roles", "admin"),
		"the " + assertionHdr + " header is empty":   h(assertionHdr, ""),
	} {
		err := mustNotAuth(t, f.a, request(trustedPeer, want), nil, idflow.EUNAUTHORIZED)
		if msg := idflow.ErrorMessage(err); msg != hdrs {
			t.Fatalf("message %q; want %q", msg, hdrs)
		}
	}
}
