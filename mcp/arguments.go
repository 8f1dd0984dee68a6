package mcp

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"

	"github.com/idflow/idflow"
)

// arguments are a tool call's arguments, decoded field by field so that a
// field naming a user can be seen (and dropped) instead of silently
// decoded or silently ignored.
type arguments map[string]json.RawMessage

func parseArguments(raw json.RawMessage) (arguments, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return arguments{}, nil
	}
	var a arguments
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, idflow.Errorf(idflow.EINVALID, "arguments must be a JSON object")
	}
	if a == nil {
		a = arguments{}
	}
	return a, nil
}

// identityNames are argument names (lower case, without _ - . and spaces)
// that try to say whom a tool acts for. No tool has such an argument: the
// user is always the token's.
var identityNames = []string{
	"user", "userid", "username", "uid", "useremail", "email", "upn",
	"owner", "ownerid", "as", "asuser", "actas", "actingas", "runas",
	"onbehalfof", "behalfof", "impersonate", "impersonateuser",
	"sub", "subject", "oid", "principal", "principalid",
	"tenant", "tenantid", "tid", "account", "accountid",
}

// identityKeys returns the argument names that name a user, sorted.
func (a arguments) identityKeys() []string {
	var out []string
	for k := range a {
		norm := strings.Map(func(r rune) rune {
			switch r {
			case '_', '-', '.', ' ':
				return -1
			}
			return r
		}, strings.ToLower(k))
		if slices.Contains(identityNames, norm) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
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
