package authserver

import (
	"errors"

	"github.com/idflow/idflow"
)

// Error is an OAuth error (RFC 6749 §4.1.2.1, §5.2): httpapi answers it as
// problem+json whose error and error_description members are the OAuth
// ones, so OAuth clients read it as they expect.
type Error struct {
	Code        string
	Description string
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

// OAuthError is the OAuth error code (httpapi reads it).
func (e *Error) OAuthError() (code, description string) { return e.Code, e.Description }

// oauthErr is an OAuth error as idflow answers it: the status that RFC 6749
// gives the code (invalid_client 401, a server failure 5xx, else 400).
func oauthErr(code, description string) error {
	ec := idflow.EINVALID
	switch code {
	case "invalid_client":
		ec = idflow.EUNAUTHORIZED
	case "temporarily_unavailable":
		ec = idflow.ERATELIMIT
	}
	return idflow.WrapError(ec, description, &Error{Code: code, Description: description})
}

// asOAuth returns the OAuth error of err, if it carries one.
func asOAuth(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
