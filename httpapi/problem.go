package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
)

// statusOf maps an error code to its one HTTP status.
func statusOf(code string) int {
	switch code {
	case idflow.EINVALID:
		return http.StatusBadRequest
	case idflow.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case idflow.EFORBIDDEN:
		return http.StatusForbidden
	case idflow.ENOTFOUND:
		return notFoundStatus
	case idflow.ECONFLICT:
		return http.StatusConflict
	case idflow.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case idflow.EMEDIATYPE:
		return http.StatusUnsupportedMediaType
	case idflow.EPRECONDITION:
		return http.StatusPreconditionFailed
	case idflow.ERATELIMIT:
		return http.StatusTooManyRequests
	case idflow.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// problem is an RFC 9457 problem document. It carries nothing that varies
// with the object asked for, so another user's object and a missing one
// answer byte for byte the same (the request id travels in a header).
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	// OAuth error members (RFC 6749 §5.2) of an authorization server
	// error, which OAuth clients read.
	Error            string `json:"error,omitempty"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// oauthError is an error of the authorization server (authserver.Error).
type oauthError interface {
	OAuthError() (code, description string)
}

// writeError answers err as problem+json; internal causes are logged, never shown.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errBodyTimeout) { // middleware.go
		w.Header().Set("Connection", "close")
		writeProblem(w, http.StatusRequestTimeout, "timeout", errBodyTimeout.Error())
		return
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = idflow.Errorf(idflow.ETOOLARGE, "request body larger than %d bytes", mbe.Limit)
	}
	code := idflow.ErrorCode(err)
	status := statusOf(code)
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "request failed", "err", err, "request_id", requestID(r.Context()))
	}
	if status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", s.wwwAuthenticate(r, err))
	}
	if errors.Is(err, auth.ErrInsufficientScope) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="idflow", error="insufficient_scope"`)
	}
	var oe oauthError
	if errors.As(err, &oe) {
		pr := newProblem(status, code, idflow.ErrorMessage(err))
		pr.Error, pr.ErrorDescription = oe.OAuthError()
		writeProblemDoc(w, pr)
		return
	}
	if isSCIM(r) { // SCIM clients read SCIM's error document (handlers_scim.go)
		writeSCIMError(w, status, err)
		return
	}
	writeProblem(w, status, code, idflow.ErrorMessage(err))
}

func writeProblemDoc(w http.ResponseWriter, pr problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Del("Content-Length")
	w.WriteHeader(pr.Status)
	_ = json.NewEncoder(w).Encode(pr)
}

func writeProblem(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Del("Content-Length")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(newProblem(status, code, detail))
}

func newProblem(status int, code, detail string) problem {
	return problem{Type: "urn:idflow:problem:" + code, Title: http.StatusText(status), Status: status, Detail: detail}
}

// wwwAuthenticate is the challenge of a 401 (RFC 6750).
func (s *Server) wwwAuthenticate(r *http.Request, err error) string {
	ch := `Bearer realm="idflow"`
	if r.Header.Get("Authorization") != "" {
		ch += `, error="invalid_token", error_description="` + idflow.ErrorMessage(err) + `"`
	}
	return ch
}
