package sqlstore

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/idflow/idflow"
)

// Cursor is the keyset position after which the next page of a list starts:
// the sort key (a timestamp in unix nanoseconds, or a sequence number) and
// the row's id. Both backends encode it the same way, so a cursor means the
// same on either. It is opaque to clients.
type Cursor struct {
	Key int64
	ID  string
}

// Encode returns the opaque form of c.
func (c Cursor) Encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.Key, 10) + "." + c.ID))
}

// DecodeCursor parses an opaque cursor; anything malformed is EINVALID.
func DecodeCursor(s string) (Cursor, error) {
	bad := idflow.Errorf(idflow.EINVALID, "invalid cursor")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, bad
	}
	key, id, ok := strings.Cut(string(b), ".")
	if !ok || id == "" {
		return Cursor{}, bad
	}
	n, err := strconv.ParseInt(key, 10, 64)
	if err != nil {
		return Cursor{}, bad
	}
	return Cursor{Key: n, ID: id}, nil
}

// PageLimit applies the default and the maximum; a negative limit is invalid.
func PageLimit(limit, def, maxLimit int) (int, error) {
	switch {
	case limit < 0:
		return 0, idflow.Errorf(idflow.EINVALID, "limit must not be negative")
	case limit == 0:
		return def, nil
	default:
		return min(limit, maxLimit), nil
	}
}
