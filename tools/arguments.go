package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/idflow/idflow"
)

// identityNames are the argument names that try to say whom a tool acts
// for (docs/TOOLS.md). They are removed from the arguments of every tool, at
// every depth.
var identityNames = []string{"userid", "owner", "ownerid", "asuser", "onbehalfof", "impersonate"}

// builtinIdentityNames are further names that no built-in tool has as an
// argument and that only make sense as an attempt to name someone. They
// are removed from the top level of a built-in tool's arguments; a
// downstream tool may legitimately take, say, an email subject or an
// account number.
var builtinIdentityNames = []string{
	"user", "username", "uid", "useremail", "email", "upn",
	"as", "actas", "actingas", "runas", "behalfof", "impersonateuser",
	"sub", "subject", "oid", "principal", "principalid",
	"tenant", "tenantid", "tid", "account", "accountid",
}

// identityKey reports whether an argument named key names a user. Names
// are compared with everything but letters and digits dropped, under
// Unicode case folding, so user_id, userId, USER-ID, "user id" and
// on.behalf.of all count; so do spellings a case-insensitive JSON decoder
// would fold onto them (ſ for s, K for k).
func identityKey(key string, builtinTop bool) bool {
	norm := strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return r
		}
		return -1
	}, key)
	if norm == "" || len(norm) > 32 {
		return false
	}
	for _, n := range identityNames {
		if strings.EqualFold(norm, n) {
			return true
		}
	}
	if builtinTop {
		for _, n := range builtinIdentityNames {
			if strings.EqualFold(norm, n) {
				return true
			}
		}
	}
	return false
}

// prepared is a call's arguments once checked: a JSON object without any
// argument naming a user.
type prepared struct {
	raw     json.RawMessage // what Run sees
	removed []string        // JSON Pointers of the identity arguments removed
}

// prepareArguments checks raw (at most limit bytes, a JSON object; empty or
// null is {}) and removes every identity argument: at every depth, and for
// a built-in tool the wider list at the top level, where a null value is
// also dropped (models send null for optional arguments).
func prepareArguments(raw json.RawMessage, limit int, builtin bool) (prepared, error) {
	if len(raw) > limit {
		return prepared{}, idflow.Errorf(idflow.ETOOLARGE, "the arguments are %d bytes; the limit is %d", len(raw), limit)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return prepared{raw: json.RawMessage("{}")}, nil
	}
	if !utf8.Valid(raw) {
		// Refused rather than repaired: the JSON decoder would silently
		// replace the bytes, and a model or client sends valid UTF-8.
		return prepared{}, idflow.Errorf(idflow.EINVALID, "the arguments are not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // numbers pass through exactly as sent
	var v any
	if err := dec.Decode(&v); err != nil {
		return prepared{}, idflow.Errorf(idflow.EINVALID, "the arguments are not valid JSON: %s", clip(err.Error(), 200))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return prepared{}, idflow.Errorf(idflow.EINVALID, "the arguments must be one JSON object, with nothing after it")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return prepared{}, idflow.Errorf(idflow.EINVALID, "the arguments must be a JSON object")
	}
	var p prepared
	strip(obj, "", builtin, &p.removed)
	if builtin {
		for k, val := range obj {
			if val == nil {
				delete(obj, k)
			}
		}
	}
	// Re-encoded, the tool gets one unambiguous object: no duplicate key
	// that another parser might read differently.
	b, err := encodeNoHTML(obj)
	if err != nil {
		return prepared{}, idflow.WrapError(idflow.EINVALID, "the arguments could not be re-encoded", err)
	}
	p.raw = b
	if len(p.raw) > limit { // U+2028 and U+2029 come out escaped, longer
		return prepared{}, idflow.Errorf(idflow.ETOOLARGE, "the arguments are %d bytes once encoded; the limit is %d", len(p.raw), limit)
	}
	return p, nil
}

// strip removes the identity arguments of v and of everything inside it,
// appending the JSON Pointer of each to removed.
func strip(v any, path string, builtinTop bool, removed *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			at := path + "/" + pointerEscape(k)
			if identityKey(k, builtinTop) {
				delete(v, k)
				*removed = append(*removed, at)
				continue
			}
			strip(child, at, false, removed)
		}
	case []any:
		for i, child := range v {
			strip(child, path+"/"+strconv.Itoa(i), false, removed)
		}
	}
}

// pointerEscape escapes a key for a JSON Pointer (RFC 6901).
func pointerEscape(k string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(k)
}

// arguments are a built-in tool's (prepared) arguments, read field by field.
type arguments map[string]json.RawMessage

func parseArguments(raw json.RawMessage) (arguments, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return arguments{}, nil
	}
	var a arguments
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, idflow.Errorf(idflow.EINVALID, "the arguments must be a JSON object")
	}
	if a == nil {
		a = arguments{}
	}
	return a, nil
}

// str returns a string argument; absent or null is "" (an error when required).
func (a arguments) str(name string, required bool) (string, error) {
	raw, ok := a[name]
	if !ok || bytes.Equal(raw, []byte("null")) {
		if required {
			return "", idflow.Errorf(idflow.EINVALID, "%s is required", name)
		}
		return "", nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", idflow.Errorf(idflow.EINVALID, "%s must be a string", name)
	}
	if required && strings.TrimSpace(v) == "" {
		return "", idflow.Errorf(idflow.EINVALID, "%s is required", name)
	}
	return v, nil
}

// integer returns an integer argument within min..max; absent or null is 0.
func (a arguments) integer(name string, min, max int) (int, error) {
	raw, ok := a[name]
	if !ok || bytes.Equal(raw, []byte("null")) {
		return 0, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || f < float64(min) || f > float64(max) {
		return 0, idflow.Errorf(idflow.EINVALID, "%s must be an integer within %d..%d", name, min, max)
	}
	return int(f), nil
}

// clip shortens s to at most n bytes, on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
