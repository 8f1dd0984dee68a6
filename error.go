package idflow

import (
	"errors"
	"fmt"
)

// Error codes. The HTTP layer maps each to one status, once.
const (
	EINVALID      = "invalid"      // 400
	EUNAUTHORIZED = "unauthorized" // 401
	EFORBIDDEN    = "forbidden"    // 403
	ENOTFOUND     = "not_found"    // 404
	ECONFLICT     = "conflict"     // 409
	ETOOLARGE     = "too_large"    // 413
	ERATELIMIT    = "rate_limited" // 429
	EUNAVAILABLE  = "unavailable"  // 503
	EINTERNAL     = "internal"     // 500
)

// EMEDIATYPE: a request body in a media type the route does not read (415).
const EMEDIATYPE = "unsupported_media_type"

// EPRECONDITION: an If-Match that no longer matches the resource (412).
const EPRECONDITION = "precondition_failed"

// Error is an error meant for the caller: its Message is safe to show.
type Error struct {
	Code    string
	Message string
	Err     error // the cause, logged but never shown
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WrapError returns an *Error that keeps cause for logs.
func WrapError(code, message string, cause error) *Error {
	return &Error{Code: code, Message: message, Err: cause}
}

// ErrorCode returns the code of the first *Error in err's chain, or EINTERNAL.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the caller-safe message of err.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// NotFound is the one answer for a missing object and for another user's
// object: the two must be indistinguishable.
func NotFound(kind string) *Error { return Errorf(ENOTFOUND, "%s not found", kind) }
