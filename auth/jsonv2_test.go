package auth

import (
	"errors"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// The json/v2 reading of JOSE headers and JWT claims. idflow's own reader
// (jsonreader.go) was measured against it (docs/BENCHMARKS.md) and kept;
// FuzzClaims and FuzzJWSHeader hold it to this reference. json/v2's
// defaults are the rules idflow wants: names match exactly, duplicate
// names are refused, strings must be valid UTF-8 (no lone surrogates).

// v2Claims decodes a claims set with json/v2 through the claims' json tags
// and the UnmarshalJSONFrom methods below.
func v2Claims(payload []byte, opts ...json.Options) (claims, error) {
	var c claims
	if !startsObject(payload) {
		return c, errJSON // json/v2 would leave c zero for "null"
	}
	err := json.Unmarshal(payload, &c, opts...)
	return c, err
}

func startsObject(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{'
	}
	return false
}

// v2Header is the JOSE header as parseJWSHeader reads it.
type v2Header struct {
	Alg  headerString   `json:"alg"`
	Kid  headerString   `json:"kid"`
	Crit jsontext.Value `json:"crit"`
	B64  jsontext.Value `json:"b64"`
}

// headerString is a header parameter that, when present, is a string:
// unlike a *string it tells null (refused) from absent.
type headerString struct {
	set bool
	s   string
}

func (h *headerString) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	if d.PeekKind() != '"' {
		return errWrongType
	}
	tok, err := d.ReadToken()
	h.set, h.s = true, tok.String()
	return err
}

// v2JWSHeader reads a header with json/v2 and applies parseJWSHeader's
// rules: crit and b64 refused, alg required and allowed, alg and kid
// strings.
func v2JWSHeader(b []byte, opts ...json.Options) (alg, kid string, err error) {
	var h v2Header
	if !startsObject(b) {
		return "", "", errJWSHeader
	}
	if err := json.Unmarshal(b, &h, opts...); err != nil {
		return "", "", err
	}
	if h.Crit != nil || h.B64 != nil {
		return "", "", errJWSCrit
	}
	if !h.Alg.set || !allowedAlg(h.Alg.s) {
		return "", "", errJWSAlg
	}
	return h.Alg.s, h.Kid.s, nil
}

var errWrongType = errors.New("wrong JSON type")

// readStrings reads an array of strings (no nulls), as strArray.
func readStrings(d *jsontext.Decoder) ([]string, error) {
	if _, err := d.ReadToken(); err != nil { // '['
		return nil, err
	}
	out := []string{}
	for {
		switch d.PeekKind() {
		case ']':
			_, err := d.ReadToken()
			return out, err
		case '"':
			tok, err := d.ReadToken()
			if err != nil {
				return nil, err
			}
			out = append(out, tok.String())
		default:
			return nil, errWrongType
		}
	}
}

func (l *stringList) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	switch d.PeekKind() {
	case 'n':
		*l = nil
		_, err := d.ReadToken()
		return err
	case '"':
		tok, err := d.ReadToken()
		*l = stringList{tok.String()}
		return err
	case '[':
		ss, err := readStrings(d)
		*l = ss
		return err
	}
	return errWrongType
}

func (l *spaceList) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	switch d.PeekKind() {
	case 'n':
		*l = nil
		_, err := d.ReadToken()
		return err
	case '"':
		tok, err := d.ReadToken()
		*l = strings.Fields(tok.String())
		return err
	case '[':
		ss, err := readStrings(d)
		*l = ss
		return err
	}
	return errWrongType
}

func (n *numericDate) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	if d.PeekKind() != '0' {
		return errBadDate // null never gets here: json/v2 leaves the pointer nil
	}
	tok, err := d.ReadToken()
	if err != nil {
		return err
	}
	n.Time, err = dateFromFloat(tok.Float())
	return err
}

func (n *claimNames) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	switch d.PeekKind() {
	case 'n':
		*n = false
		_, err := d.ReadToken()
		return err
	case '{':
	default:
		return errWrongType
	}
	if _, err := d.ReadToken(); err != nil {
		return err
	}
	var groups bool
	for d.PeekKind() == '"' {
		tok, err := d.ReadToken()
		if err != nil {
			return err
		}
		if tok.String() == "groups" {
			groups = true
		}
		if err := d.SkipValue(); err != nil {
			return err
		}
	}
	if _, err := d.ReadToken(); err != nil {
		return err
	}
	*n = claimNames(groups)
	return nil
}
