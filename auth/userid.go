package auth

import (
	"errors"
	"strings"

	"github.com/idflow/idflow"
	"golang.org/x/text/secure/precis"
)

// errBadUserID: a user id that would look like another one. Two ids that
// print the same but differ in white space, an invisible character or a
// Unicode normalization form would be two users, and their owner predicates
// two different strings: such an id is refused, never trimmed or mapped.
var errBadUserID = errors.New("user id not in canonical form")

// checkUserID accepts s if it is non-empty, has no leading or trailing white
// space, and is stable under the PRECIS OpaqueString profile (RFC 8265):
// no control, format (zero-width, bidi override, BOM, soft hyphen) or
// other default-ignorable characters, no space other than U+0020, and NFC.
func checkUserID(s string) error {
	if s == "" || strings.TrimSpace(s) != s {
		return errBadUserID
	}
	if printableASCII(s) {
		return nil // the common case (GUIDs, subs, logins), without allocating
	}
	out, err := precis.OpaqueString.String(s)
	if err != nil || out != s {
		return errBadUserID
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// userIDError refuses a credential whose user id failed checkUserID, saying
// which source carried it.
func userIDError(source string, err error) error {
	return idflow.WrapError(idflow.EUNAUTHORIZED, source+" carries a malformed user id (white space at either end, an invisible character, or text not in Unicode NFC)", err)
}
