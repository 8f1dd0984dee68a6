//go:build !idflow_broken_404

package httpapi

import "net/http"

// notFoundStatus is the status of a missing (or another user's) object.
// Only the deliberately broken build of `idflow verify`'s self-test (tag
// idflow_broken_404, docs/VERIFY.md) changes it.
const notFoundStatus = http.StatusNotFound
