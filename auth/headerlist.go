package auth

import (
	"errors"
	"strings"
)

// The role and group headers (X-Authenticated-Roles, -Groups) are HTTP
// lists (RFC 9110 §5.6.1) whose elements are either bare names or
// quoted-strings (§5.6.4), so that a name with a comma survives the trip:
//
//	reader,admin,"Sales, EMEA","say \"hi\"","CONTOSO\\Ops"
//
// FormatList quotes only the names that need it, so a list of simple names
// is the plain comma list it always was; ParseList reads both.

// errBadList: a list header that is not a list of names or quoted-strings.
var errBadList = errors.New("malformed list: elements are names or \"quoted strings\" separated by commas")

// FormatList encodes names as one header value. A name that no header can
// carry (a control character other than tab) is left out: a missing role
// grants less, never more.
func FormatList(names []string) string {
	var b strings.Builder
	for _, n := range names {
		if n == "" || strings.ContainsFunc(n, isCTL) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if !needsQuotes(n) {
			b.WriteString(n)
			continue
		}
		b.WriteByte('"')
		for i := 0; i < len(n); i++ {
			if n[i] == '"' || n[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(n[i])
		}
		b.WriteByte('"')
	}
	return b.String()
}

func needsQuotes(n string) bool {
	return strings.ContainsAny(n, `,"\`) || isOWS(n[0]) || isOWS(n[len(n)-1])
}

func isCTL(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// ParseList decodes a header value written by FormatList, or a plain comma
// list. Empty elements are skipped; a bare element is trimmed of spaces and
// taken literally (a backslash included); a quote inside a bare element,
// an unterminated quoted-string or text after one is refused.
func ParseList(s string) ([]string, error) {
	out := []string{}
	i := 0
	for {
		for i < len(s) && isOWS(s[i]) {
			i++
		}
		if i == len(s) {
			return out, nil
		}
		switch s[i] {
		case ',':
			i++
			continue
		case '"':
			var b strings.Builder
			i++
			for {
				if i == len(s) {
					return nil, errBadList
				}
				c := s[i]
				if c == '"' {
					i++
					break
				}
				if c == '\\' {
					if i+1 == len(s) {
						return nil, errBadList
					}
					i++
					c = s[i]
				}
				b.WriteByte(c)
				i++
			}
			for i < len(s) && isOWS(s[i]) {
				i++
			}
			if i < len(s) && s[i] != ',' {
				return nil, errBadList
			}
			if b.Len() > 0 {
				out = append(out, b.String())
			}
		default:
			end := strings.IndexByte(s[i:], ',')
			if end < 0 {
				end = len(s) - i
			}
			elem := strings.Trim(s[i:i+end], " \t")
			if strings.Contains(elem, `"`) {
				return nil, errBadList
			}
			out = append(out, elem)
			i += end
		}
	}
}
