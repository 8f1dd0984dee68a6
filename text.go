package idflow

import (
	"strings"
	"unicode/utf8"
)

// MaxNameLen bounds a name, in characters: of an app, an agent, a
// workflow, a tool an agent or a step names, and a session's title.
const MaxNameLen = 200

// CheckText is the rule of every text field a user writes: white space
// around it is trimmed; then it must be present when required, UTF-8
// without NUL, and at most max characters long. It answers the trimmed
// text, or EINVALID naming field. The Validate methods of the entities
// apply it to their fields.
func CheckText(field, v string, max int, required bool) (string, error) {
	v = strings.TrimSpace(v)
	if required && v == "" {
		return "", Errorf(EINVALID, "%s is required", field)
	}
	if !utf8.ValidString(v) {
		return "", Errorf(EINVALID, "%s must be UTF-8 text", field)
	}
	if n := utf8.RuneCountInString(v); n > max {
		return "", Errorf(EINVALID, "%s is %d characters; the limit is %d", field, n, max)
	}
	if strings.ContainsRune(v, 0) {
		return "", Errorf(EINVALID, "%s must not contain NUL", field)
	}
	return v, nil
}

// checkPatchText is CheckText for a field of a patch: nil, "unchanged",
// stays nil.
func checkPatchText(field string, v *string, max int, required bool) (*string, error) {
	if v == nil {
		return nil, nil
	}
	t, err := CheckText(field, *v, max, required)
	if err != nil {
		return nil, err
	}
	return &t, nil
}
