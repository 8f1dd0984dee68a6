package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"sort"
	"testing"
)

// The Wycheproof JWS vectors (auth/testdata/wycheproof, Apache 2.0; see its
// README) run through the path a bearer token takes: the group's JWKS is
// served to a RemoteKeySet, which parses it, picks a key for the token's
// kid and alg, and verifies the compact JWS.

type wycheproofFile struct {
	NumberOfTests int `json:"numberOfTests"`
	TestGroups    []struct {
		Comment string          `json:"comment"`
		Private json.RawMessage `json:"private"`
		Public  json.RawMessage `json:"public"`
		Tests   []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			JWS     string   `json:"jws"`
			Result  string   `json:"result"`
			Flags   []string `json:"flags"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// wycheproofRefusal is why idflow refuses a vector Wycheproof calls valid,
// and the error that shows it.
type wycheproofRefusal struct {
	why string
	err error
}

var (
	refuseHMAC         = wycheproofRefusal{"HMAC is not in the algorithm allowlist: a public key must never double as a shared secret", errJWSAlg}
	refuseEmptyPayload = wycheproofRefusal{"an empty payload is no claims set (and an empty part is how a detached payload looks)", errNotJWS}
	refusePinnedES521  = wycheproofRefusal{`the key pins alg "ES521" (a typo for ES512), so it never verifies the token's ES512`, errUnknownKey}
	refusePinnedPS256  = wycheproofRefusal{`the key pins alg "PS256" and the token is PS384: a key verifies only the algorithm its JWKS entry names`, errUnknownKey}
	refuseHeaderChar   = wycheproofRefusal{`the header holds "?", outside the base64url alphabet: strict decoding refuses it (before the HMAC alg is seen)`, errJWSHeader}
	refuseHMACBadChars = wycheproofRefusal{`HMAC, refused from the header before the payload (which holds "?", outside the base64url alphabet) is read`, errJWSAlg}
)

// wycheproofRefused lists every valid vector that idflow refuses, exactly:
// a vector refused without an entry, or an entry for a vector accepted,
// fails the test.
var wycheproofRefused = map[int]wycheproofRefusal{
	1:   refuseHMAC,         // hs256 acceptsValid
	259: refuseEmptyPayload, // rs256
	264: refuseEmptyPayload, // rs384
	268: refuseEmptyPayload, // rs512
	272: refuseEmptyPayload, // ps256
	320: refuseEmptyPayload, // ps384
	325: refuseEmptyPayload, // ps512
	346: refusePinnedPS256,  // RFC 7520 Figure 20
	347: refusePinnedES521,  // RFC 7520 Figure 27
	348: refuseHMAC,         // RFC 7520 Figure 35
	350: refusePinnedPS256,  // RFC 7520 Figure 20, key_ops ["verify"]
	351: refusePinnedES521,  // RFC 7520 Figure 27, key_ops ["verify"]
	352: refuseHMAC,         // RFC 7520 Figure 35
	357: refuseHMAC,         // base64: ValidMac
	358: refuseHMAC,         // ValidEdgeCaseMac
	359: refuseHMAC,         // ValidEdgeCaseMac
	372: refuseHeaderChar,   // InvalidCharacterInsertedInHeader
	373: refuseHMACBadChars, // InvalidCharacterInsertedInPayload
	376: refuseHMAC,         // ValidSpacesInJsonHeader
	377: refuseHMAC,         // ValidWhiteSpaceInJsonHeader
}

// jwksTransport answers every request with one JWKS document.
type jwksTransport []byte

func (j jwksTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(j)), Request: r}, nil
}

func TestWycheproofJWS(t *testing.T) {
	raw, err := os.ReadFile("testdata/wycheproof/json_web_signature_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var file wycheproofFile
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ran, valid, invalid int
	refused := map[int]bool{}
	for _, g := range file.TestGroups {
		// The verification key is the public one; an HMAC group has only
		// its secret, which idflow's key set must refuse to hold.
		key := g.Public
		if key == nil {
			key = g.Private
		}
		jwks, err := json.Marshal(map[string][]json.RawMessage{"keys": {key}})
		if err != nil {
			t.Fatal(err)
		}
		ks := NewRemoteKeySet("https://jwks.wycheproof.test/keys", &http.Client{Transport: jwksTransport(jwks)}, 0, nil)
		for _, tc := range g.Tests {
			ran++
			payload, err := ks.VerifySignature(ctx, tc.JWS)
			switch tc.Result {
			case "invalid":
				invalid++
				if err == nil {
					t.Errorf("tcId %d (%s %s, flags %v): accepted an invalid JWS", tc.TcID, g.Comment, tc.Comment, tc.Flags)
				}
			case "valid":
				valid++
				want, listed := wycheproofRefused[tc.TcID]
				switch {
				case err == nil && listed:
					t.Errorf("tcId %d (%s %s): accepted, but listed as refused (%s); remove it from the list", tc.TcID, g.Comment, tc.Comment, want.why)
				case err != nil && !listed:
					t.Errorf("tcId %d (%s %s): a valid JWS is refused with no reason on record: %v", tc.TcID, g.Comment, tc.Comment, err)
				case err != nil && !errors.Is(err, want.err):
					t.Errorf("tcId %d (%s %s): refused with %v, want %v (%s)", tc.TcID, g.Comment, tc.Comment, err, want.err, want.why)
				case err != nil:
					refused[tc.TcID] = true
				case len(payload) == 0:
					t.Errorf("tcId %d: accepted with an empty payload", tc.TcID)
				}
			default:
				t.Fatalf("tcId %d: result %q", tc.TcID, tc.Result)
			}
		}
	}
	if ran != file.NumberOfTests || ran != 401 {
		t.Fatalf("ran %d vectors, the file has %d (want 401)", ran, file.NumberOfTests)
	}
	for id := range wycheproofRefused {
		if !refused[id] && !t.Failed() {
			t.Errorf("tcId %d is listed as refused but is no valid vector of the file", id)
		}
	}
	ids := make([]int, 0, len(refused))
	for id := range refused {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	t.Logf("%d vectors: %d invalid refused; %d valid, %d accepted, %d refused for the reasons on record %v",
		ran, invalid, valid, valid-len(refused), len(refused), ids)
}
