package auth

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// This file is a small, strict JSON reader for JOSE headers and JWT claims.
// Its rules are json/v2's (github.com/go-json-experiment/json): names match
// exactly (encoding/json would fill oid from "OID"), a claim idflow reads
// may appear once, strings must be valid UTF-8 with no lone surrogate, and
// nothing may follow the object.
//
// Why not json/v2 itself: every request that misses the verified-token
// cache reads a header and a claims set, and the budget for everything
// around the signature check is 20 % of an RSA verification. Measured side
// by side (docs/BENCHMARKS.md, "JOSE reader"), uncached verification with
// this reader costs 1.13× raw RSA; with json/v2 reading the same header and
// claims through struct tags, 1.20× (about 2 µs and 6 allocations more per
// token). So this reader stays, and FuzzClaims and FuzzJWSHeader hold it to
// json/v2 (jsonv2_test.go): it accepts nothing json/v2 refuses but a
// repeated name it does not read, refuses nothing json/v2 accepts but
// nesting deeper than maxJSONDepth, and reads every claim the same.

var (
	errJSON    = errors.New("malformed JSON")
	errTooDeep = errors.New("JSON nested too deeply")
)

// maxJSONDepth bounds nesting inside claims nobody reads.
const maxJSONDepth = 64

type jsonReader struct {
	b     []byte
	s     string // b as a string, when set: str returns substrings of it
	i     int
	depth int
}

func (r *jsonReader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (r *jsonReader) peek() byte {
	r.ws()
	if r.i >= len(r.b) {
		return 0
	}
	return r.b[r.i]
}

// topObject reads the whole input as one object; nothing may follow it.
func (r *jsonReader) topObject(member func(key []byte) error) error {
	if err := r.object(member); err != nil {
		return err
	}
	if r.ws(); r.i != len(r.b) {
		return errJSON
	}
	return nil
}

// object reads an object, calling member for each key with the reader at
// the value, which member must consume. key is only valid during the call.
func (r *jsonReader) object(member func(key []byte) error) error {
	if r.peek() != '{' {
		return errJSON
	}
	r.i++
	if r.peek() == '}' {
		r.i++
		return nil
	}
	for {
		if r.peek() != '"' {
			return errJSON
		}
		key, err := r.strBytes()
		if err != nil {
			return err
		}
		if r.peek() != ':' {
			return errJSON
		}
		r.i++
		r.ws()
		if err := member(key); err != nil {
			return err
		}
		switch r.peek() {
		case ',':
			r.i++
		case '}':
			r.i++
			return nil
		default:
			return errJSON
		}
	}
}

// array reads an array, calling elem with the reader at each element.
func (r *jsonReader) array(elem func() error) error {
	if r.peek() != '[' {
		return errJSON
	}
	r.i++
	if r.peek() == ']' {
		r.i++
		return nil
	}
	for {
		r.ws()
		if err := elem(); err != nil {
			return err
		}
		switch r.peek() {
		case ',':
			r.i++
		case ']':
			r.i++
			return nil
		default:
			return errJSON
		}
	}
}

// scanString moves past a string and reports its raw content bounds and
// whether it holds escapes. It validates escapes, control characters and
// UTF-8.
func (r *jsonReader) scanString() (start, end int, escaped bool, err error) {
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return 0, 0, false, errJSON
	}
	r.i++
	start = r.i
	ascii := true
	for r.i < len(r.b) {
		c := r.b[r.i]
		if c >= 0x20 && c < 0x80 && c != '"' && c != '\\' {
			r.i++ // the common case, first
			continue
		}
		switch {
		case c == '"':
			end = r.i
			r.i++
			if !ascii && !utf8.Valid(r.b[start:end]) {
				return 0, 0, false, errJSON
			}
			return start, end, escaped, nil
		case c == '\\':
			escaped = true
			if r.i+1 >= len(r.b) {
				return 0, 0, false, errJSON
			}
			switch r.b[r.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				r.i += 2
			case 'u':
				if !r.escapedRune() {
					return 0, 0, false, errJSON
				}
			default:
				return 0, 0, false, errJSON
			}
		case c < 0x20:
			return 0, 0, false, errJSON
		default:
			if c >= 0x80 {
				ascii = false
			}
			r.i++
		}
	}
	return 0, 0, false, errJSON
}

// escapedRune moves past a \u escape at r.i. A surrogate must be a high
// one escaped right before a low one: a lone surrogate is no character, and
// json/v2 (strict UTF-8) refuses it anywhere, in claims idflow reads or not.
func (r *jsonReader) escapedRune() bool {
	if r.i+6 > len(r.b) {
		return false
	}
	r1, ok := hex4(r.b[r.i+2 : r.i+6])
	if !ok {
		return false
	}
	r.i += 6
	if !utf16.IsSurrogate(r1) {
		return true
	}
	if r1 >= 0xDC00 || r.i+6 > len(r.b) || r.b[r.i] != '\\' || r.b[r.i+1] != 'u' {
		return false
	}
	r2, ok := hex4(r.b[r.i+2 : r.i+6])
	if !ok || r2 < 0xDC00 || r2 > 0xDFFF {
		return false
	}
	r.i += 6
	return true
}

func hex4(b []byte) (rune, bool) {
	var v rune
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			v = v<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// unescape decodes the raw content of a string that holds escapes, already
// validated by scanString (surrogates come in pairs).
func unescape(raw []byte) ([]byte, error) {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'u':
			r1, _ := hex4(raw[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(r1) {
				if i+6 > len(raw) {
					return nil, errJSON
				}
				r2, _ := hex4(raw[i+2 : i+6])
				if r1 = utf16.DecodeRune(r1, r2); r1 == utf8.RuneError {
					return nil, errJSON
				}
				i += 6
			}
			out = utf8.AppendRune(out, r1)
			continue
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		default: // '"', '\\', '/'
			out = append(out, raw[i+1])
		}
		i += 2
	}
	return out, nil
}

// strBytes reads a string; the result may alias the input.
func (r *jsonReader) strBytes() ([]byte, error) {
	start, end, escaped, err := r.scanString()
	if err != nil {
		return nil, err
	}
	if !escaped {
		return r.b[start:end], nil
	}
	return unescape(r.b[start:end])
}

// str reads a string value. With r.s set, a string without escapes is a
// substring of it (no allocation).
func (r *jsonReader) str() (string, error) {
	start, end, escaped, err := r.scanString()
	if err != nil {
		return "", err
	}
	if !escaped {
		if r.s != "" {
			return r.s[start:end], nil
		}
		return string(r.b[start:end]), nil
	}
	b, err := unescape(r.b[start:end])
	return string(b), err
}

// lit consumes the literal word (true, false, null).
func (r *jsonReader) lit(word string) bool {
	if len(r.b)-r.i >= len(word) && string(r.b[r.i:r.i+len(word)]) == word {
		r.i += len(word)
		return true
	}
	return false
}

// null consumes null if it is next.
func (r *jsonReader) null() bool {
	return r.peek() == 'n' && r.lit("null")
}

// number reads a JSON number and returns its text.
func (r *jsonReader) number() ([]byte, error) {
	b, i := r.b, r.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() bool {
		s := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > s
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		digits()
	default:
		return nil, errJSON
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return nil, errJSON
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return nil, errJSON
		}
	}
	r.i = i
	return b[start:i], nil
}

// skip consumes any one value.
func (r *jsonReader) skip() error {
	switch c := r.peek(); {
	case c == '"':
		_, _, _, err := r.scanString()
		return err
	case c == '{', c == '[':
		if r.depth++; r.depth > maxJSONDepth {
			return errTooDeep
		}
		var err error
		if c == '{' {
			err = r.object(func([]byte) error { return r.skip() })
		} else {
			err = r.array(r.skip)
		}
		r.depth--
		return err
	case c == 't':
		if r.lit("true") {
			return nil
		}
	case c == 'f':
		if r.lit("false") {
			return nil
		}
	case c == 'n':
		if r.lit("null") {
			return nil
		}
	case c == '-' || '0' <= c && c <= '9':
		_, err := r.number()
		return err
	}
	return errJSON
}

// ---- typed claim values ----

// strClaim reads a string or null ("").
func (r *jsonReader) strClaim() (string, error) {
	if r.null() {
		return "", nil
	}
	if r.peek() != '"' {
		return "", errJSON
	}
	return r.str()
}

// strArray reads an array of strings (no nulls).
func (r *jsonReader) strArray() ([]string, error) {
	out := []string{}
	err := r.array(func() error {
		if r.peek() != '"' {
			return errJSON
		}
		s, err := r.str()
		out = append(out, s)
		return err
	})
	return out, err
}

// listClaim reads a string (one element), an array of strings, or null.
func (r *jsonReader) listClaim() (stringList, error) {
	switch r.peek() {
	case 'n':
		if r.lit("null") {
			return nil, nil
		}
	case '"':
		s, err := r.str()
		return stringList{s}, err
	case '[':
		return r.strArray()
	}
	return nil, errJSON
}

// spaceClaim reads a space-separated string, an array of strings, or null.
func (r *jsonReader) spaceClaim() (spaceList, error) {
	switch r.peek() {
	case 'n':
		if r.lit("null") {
			return nil, nil
		}
	case '"':
		s, err := r.str()
		return strings.Fields(s), err
	case '[':
		return r.strArray()
	}
	return nil, errJSON
}

// dateClaim reads a NumericDate or null.
func (r *jsonReader) dateClaim() (*numericDate, error) {
	if r.null() {
		return nil, nil
	}
	num, err := r.number()
	if err != nil {
		return nil, errBadDate
	}
	f, err := strconv.ParseFloat(string(num), 64)
	if err != nil {
		return nil, errBadDate
	}
	t, err := dateFromFloat(f)
	if err != nil {
		return nil, err
	}
	return &numericDate{t}, nil
}

// boolClaim reads true, false or null (false).
func (r *jsonReader) boolClaim() (bool, error) {
	switch {
	case r.null():
		return false, nil
	case r.peek() == 't' && r.lit("true"):
		return true, nil
	case r.peek() == 'f' && r.lit("false"):
		return false, nil
	}
	return false, errJSON
}

// claimNamesClaim reads _claim_names: an object (or null); reports whether
// it names "groups".
func (r *jsonReader) claimNamesClaim() (claimNames, error) {
	if r.null() {
		return false, nil
	}
	var groups bool
	err := r.object(func(key []byte) error {
		if string(key) == "groups" {
			groups = true
		}
		return r.skip()
	})
	return claimNames(groups), err
}

// Bits of the known claims, to refuse duplicates.
const (
	cIss = 1 << iota
	cSub
	cAud
	cExp
	cNbf
	cIat
	cOid
	cTid
	cEmail
	cPreferredUsername
	cUpn
	cName
	cRoles
	cGroups
	cClaimNames
	cHasGroups
	cScp
	cScope
	cIdtyp
	cVer
	cAzp
	cAppid
	cClientID
	cNonce
	cAtHash
	cCHash
)

var errDuplicateClaim = errors.New("a claim appears twice")

// parseClaims decodes a JWT claims set (see claims).
func parseClaims(payload []byte) (claims, error) {
	var c claims
	var seen uint32
	// One copy of the payload as a string; the claims are substrings of it.
	r := jsonReader{b: payload, s: string(payload)}
	err := r.topObject(func(key []byte) error {
		var bit uint32
		var err error
		switch string(key) {
		case "iss":
			bit = cIss
			c.Iss, err = r.strClaim()
		case "sub":
			bit = cSub
			c.Sub, err = r.strClaim()
		case "aud":
			bit = cAud
			c.Aud, err = r.listClaim()
		case "exp":
			bit = cExp
			c.Exp, err = r.dateClaim()
		case "nbf":
			bit = cNbf
			c.Nbf, err = r.dateClaim()
		case "iat":
			bit = cIat
			c.Iat, err = r.dateClaim()
		case "oid":
			bit = cOid
			c.Oid, err = r.strClaim()
		case "tid":
			bit = cTid
			c.Tid, err = r.strClaim()
		case "email":
			bit = cEmail
			c.Email, err = r.strClaim()
		case "preferred_username":
			bit = cPreferredUsername
			c.PreferredUsername, err = r.strClaim()
		case "upn":
			bit = cUpn
			c.Upn, err = r.strClaim()
		case "name":
			bit = cName
			c.Name, err = r.strClaim()
		case "roles":
			bit = cRoles
			c.Roles, err = r.listClaim()
		case "groups":
			bit = cGroups
			c.Groups, err = r.listClaim()
		case "_claim_names":
			bit = cClaimNames
			c.ClaimNames, err = r.claimNamesClaim()
		case "hasgroups":
			bit = cHasGroups
			c.HasGroups, err = r.boolClaim()
		case "scp":
			bit = cScp
			c.Scp, err = r.spaceClaim()
		case "scope":
			bit = cScope
			c.Scope, err = r.spaceClaim()
		case "idtyp":
			bit = cIdtyp
			c.Idtyp, err = r.strClaim()
		case "ver":
			bit = cVer
			c.Ver, err = r.strClaim()
		case "azp":
			bit = cAzp
			c.Azp, err = r.strClaim()
		case "appid":
			bit = cAppid
			c.Appid, err = r.strClaim()
		case "client_id":
			bit = cClientID
			c.ClientID, err = r.strClaim()
		case "nonce":
			bit = cNonce
			c.Nonce, err = r.strClaim()
		case "at_hash":
			bit = cAtHash
			c.AtHash, err = r.strClaim()
		case "c_hash":
			bit = cCHash
			c.CHash, err = r.strClaim()
		default:
			return r.skip()
		}
		if seen&bit != 0 {
			return errDuplicateClaim
		}
		seen |= bit
		if err != nil {
			return errors.New("claim " + string(key) + " has the wrong type")
		}
		return nil
	})
	if err != nil {
		return claims{}, err
	}
	return c, nil
}

// lookupStringClaim returns the top-level string claim name of a claims set
// already accepted by parseClaims; "" when it is absent, not a string, or
// present more than once.
func lookupStringClaim(payload []byte, name string) string {
	var (
		val   string
		found int
	)
	r := jsonReader{b: payload}
	err := r.topObject(func(key []byte) error {
		if string(key) != name {
			return r.skip()
		}
		found++
		if r.peek() != '"' {
			val = ""
			return r.skip()
		}
		s, err := r.str()
		val = s
		return err
	})
	if err != nil || found != 1 {
		return ""
	}
	return val
}
