// Package scim is the SCIM 2.0 protocol (RFC 7643, RFC 7644) of idflow's
// /scim/v2: the User and Group documents and how they map to
// idflow.DirectoryUser and DirectoryGroup, list filters, PATCH operations
// in the forms Microsoft Entra ID and Okta send them, ETags, and SCIM's
// error document. It holds no state and does no I/O: httpapi serves the
// routes, service stores and audits. Filters and PATCH paths are parsed by
// github.com/scim2/filter-parser/v2 (docs/SCIM.md says why not a whole
// SCIM server library).
package scim

import (
	"errors"
	"strconv"
	"strings"

	"github.com/idflow/idflow"
)

// Schema and message URNs.
const (
	SchemaUser       = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaGroup      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	SchemaEnterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	MessageList      = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	MessagePatch     = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	MessageError     = "urn:ietf:params:scim:api:messages:2.0:Error"
	SchemaSPConfig   = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	SchemaResource   = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	SchemaSchema     = "urn:ietf:params:scim:schemas:core:2.0:Schema"
)

// MediaType is SCIM's JSON media type (RFC 7644 §3.1).
const MediaType = "application/scim+json"

// Bounds of a request.
const (
	MaxOperations = 1000 // PATCH operations in one request
	MaxFilterLen  = 1024 // bytes of a filter
	DefaultCount  = 100  // a list's page when count is absent
)

// Error is an idflow error with its SCIM error type (RFC 7644 §3.12:
// invalidFilter, invalidPath, invalidValue, noTarget, mutability,
// uniqueness, tooMany, invalidSyntax, invalidVers).
type Error struct {
	Type string
	Err  *idflow.Error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func errorf(code, scimType, format string, args ...any) error {
	return &Error{Type: scimType, Err: idflow.Errorf(code, format, args...)}
}

func invalid(scimType, format string, args ...any) error {
	return errorf(idflow.EINVALID, scimType, format, args...)
}

// TypeOf answers err's SCIM error type: its own, or the one its code
// implies ("" when none).
func TypeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Type
	}
	switch idflow.ErrorCode(err) {
	case idflow.ECONFLICT:
		return "uniqueness"
	case idflow.EINVALID:
		return "invalidValue"
	case idflow.ETOOLARGE:
		return "tooMany"
	case idflow.EPRECONDITION:
		return "invalidVers"
	}
	return ""
}

// ErrorDoc is SCIM's error document.
type ErrorDoc struct {
	Schemas  []string `json:"schemas"`
	Status   string   `json:"status"`
	ScimType string   `json:"scimType,omitempty"`
	Detail   string   `json:"detail"`
}

// NewErrorDoc answers the error document of status and err's safe message.
func NewErrorDoc(status int, err error) ErrorDoc {
	return ErrorDoc{Schemas: []string{MessageError}, Status: strconv.Itoa(status), ScimType: TypeOf(err), Detail: idflow.ErrorMessage(err)}
}

// ETag is the weak entity tag of a resource version.
func ETag(version int64) string { return `W/"` + strconv.FormatInt(version, 10) + `"` }

// IfMatch answers the version an If-Match header asks for: 0 when there is
// none or it is "*", which match any version. A tag that is no version of
// ours matches none (EPRECONDITION).
func IfMatch(header string) (int64, error) {
	h := strings.TrimSpace(header)
	if h == "" || h == "*" {
		return 0, nil
	}
	for _, tag := range strings.Split(h, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if n, err := strconv.ParseInt(strings.Trim(tag, `"`), 10, 64); err == nil && n > 0 {
			return n, nil
		}
	}
	return 0, errorf(idflow.EPRECONDITION, "invalidVers", "If-Match names no version of this resource")
}

// CheckVersion refuses a resource whose version is not the one If-Match
// asked for.
func CheckVersion(want, have int64) error {
	if want != 0 && want != have {
		return errorf(idflow.EPRECONDITION, "invalidVers", "the resource changed: If-Match %s, now %s", ETag(want), ETag(have))
	}
	return nil
}

// Page reads startIndex and count (RFC 7644 §3.4.2.4): startIndex below 1
// is 1, count below 0 is 0, above idflow.MaxDirectoryPage is that.
func Page(startIndex, count string) (idflow.DirectoryPage, error) {
	p := idflow.DirectoryPage{StartIndex: 1, Count: DefaultCount}
	if startIndex != "" {
		n, err := strconv.Atoi(startIndex)
		if err != nil {
			return p, invalid("invalidValue", "startIndex must be an integer")
		}
		p.StartIndex = max(n, 1)
	}
	if count != "" {
		n, err := strconv.Atoi(count)
		if err != nil {
			return p, invalid("invalidValue", "count must be an integer")
		}
		p.Count = min(max(n, 0), idflow.MaxDirectoryPage)
	}
	return p, nil
}

// ListResponse is a page of a list.
type ListResponse struct {
	Schemas      []string `json:"schemas"`
	TotalResults int      `json:"totalResults"`
	StartIndex   int      `json:"startIndex"`
	ItemsPerPage int      `json:"itemsPerPage"`
	Resources    []any    `json:"Resources"`
}

// NewList answers the list document of items.
func NewList(items []any, total int, page idflow.DirectoryPage) ListResponse {
	if items == nil {
		items = []any{}
	}
	return ListResponse{Schemas: []string{MessageList}, TotalResults: total, StartIndex: page.StartIndex, ItemsPerPage: len(items), Resources: items}
}
