package auth

import (
	"errors"
	"strings"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// badUserIDs look like "alice" (or like nothing) but are other strings: as
// user ids they would be distinct users that print the same.
var badUserIDs = map[string]string{
	"leading space":       " alice",
	"trailing space":      "alice ",
	"trailing tab":        "alice\t",
	"trailing newline":    "alice\n",
	"no-break space":      "alice\u00a0",
	"ideographic space":   "\u3000alice",
	"inner no-break":      "ali\u00a0ce",
	"zero-width space":    "alice\u200b",
	"zero-width joiner":   "al\u200dice",
	"word joiner":         "ali\u2060ce",
	"BOM":                 "\ufeffalice",
	"soft hyphen":         "ali\u00adce",
	"RTL override":        "\u202ealice",
	"LTR mark":            "alice\u200e",
	"variation selector":  "alice\ufe0f",
	"Hangul filler":       "\u3164",
	"NUL":                 "alice\x00",
	"DEL":                 "alice\x7f",
	"line separator":      "alice\u2028",
	"decomposed é (NFD)":  "jose\u0301",
	"only spaces":         "   ",
	"only zero-width":     "\u200b",
	"C1 control":          "alice\u0085",
	"tag character":       "alice\U000E0041",
	"interlinear anchor":  "alice\ufff9",
	"mongolian separator": "alice\u180e",
}

// goodUserIDs are accepted exactly as they are.
var goodUserIDs = []string{
	"alice", "0a11ce00-0000-4000-8000-000000000001", "alice@contoso.example", "CN=Alice Smith,OU=Eng",
	"josé", "用户", "Ålesund", "a b", "🙂",
}

func TestCheckUserID(t *testing.T) {
	for name, id := range badUserIDs {
		if checkUserID(id) == nil {
			t.Errorf("%s (%q) accepted", name, id)
		}
	}
	for _, id := range append(goodUserIDs, "") {
		if err := checkUserID(id); (err == nil) != (id != "") {
			t.Errorf("%q: %v", id, err)
		}
	}
}

// Every source of a user id refuses the malformed ones with 401, saying
// why: bearer tokens (user and app-only), the plain proxy header, the
// signed proxy assertion, and a job snapshot.
func TestMalformedUserIDsRefusedEverywhere(t *testing.T) {
	f := newAuthFixture(t, nil)
	e := entraFixture(t, nil)
	for name, id := range badUserIDs {
		t.Run(name, func(t *testing.T) {
			wantMsg := func(t *testing.T, err error, source string) {
				t.Helper()
				if msg := idflow.ErrorMessage(err); !strings.Contains(msg, source) || !strings.Contains(msg, "malformed user id") {
					t.Fatalf("message %q; want it to name %q and the malformed id", msg, source)
				}
				if !errors.Is(err, errBadUserID) {
					t.Fatalf("err = %v", err)
				}
			}
			// Bearer: sub (non-Entra issuer), oid (Entra), and an app's oid.
			err := mustNotAuth(t, f.a, request(untrustedPeer, h("Authorization", "Bearer "+f.iss.Sign(f.iss.OIDC(id)))), nil, idflow.EUNAUTHORIZED)
			wantMsg(t, err, "sub claim")
			err = mustRefuse(t, e.v, e.iss.Sign(e.iss.EntraV2User(authtest.EntraUser{ObjectID: id})), idflow.EUNAUTHORIZED)
			wantMsg(t, err, "oid claim")
			err = mustRefuse(t, e.v, e.iss.Sign(e.iss.EntraV2App(authtest.EntraApp{ObjectID: id, Roles: []string{"r"}})), idflow.EUNAUTHORIZED)
			wantMsg(t, err, "the token")
			// A trusted proxy's plain header.
			r := request(trustedPeer, h("X-Authenticated-User", id))
			err = mustNotAuth(t, f.a, r, nil, idflow.EUNAUTHORIZED)
			if strings.TrimSpace(id) != "" { // a blank one is "empty"/malformed alike
				wantMsg(t, err, "X-Authenticated-User header")
			}
			// A trusted proxy's signed assertion.
			claims := map[string]any{"iss": proxyIssuer, "aud": proxyAudience, "sub": id, "exp": 4102444800, "idtyp": "user"}
			signed, serr := f.signer.Sign(claims)
			if serr != nil {
				t.Fatal(serr)
			}
			err = mustNotAuth(t, f.a, request(trustedPeer, h(assertionHdr, signed)), nil, idflow.EUNAUTHORIZED)
			wantMsg(t, err, "sub claim")
			// A job snapshot.
			if _, err := FromSnapshot(idflow.Snapshot{UserID: id}); err == nil {
				t.Fatal("snapshot accepted")
			}
		})
	}
	for _, id := range goodUserIDs {
		p := mustAuth(t, f.a, request(untrustedPeer, h("Authorization", "Bearer "+f.iss.Sign(f.iss.OIDC(id)))), nil)
		if p.UserID != id {
			t.Fatalf("user %q; want %q", p.UserID, id)
		}
		if p := mustAuth(t, f.a, request(trustedPeer, h("X-Authenticated-User", id)), nil); p.UserID != id {
			t.Fatalf("proxy user %q; want %q", p.UserID, id)
		}
	}
}
