//go:build idflow_broken_404

package httpapi

import "net/http"

// notFoundStatus, in this deliberately broken build, answers 403 where
// idflow answers 404, so a caller learns that an object exists but is not
// theirs. It exists so that the self-test of `idflow verify` can show the
// verifier catches it (docs/VERIFY.md). Never ship it.
const notFoundStatus = http.StatusForbidden
