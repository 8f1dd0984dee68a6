//go:build !idflow_broken_ws

package httpapi

// wsAnyRun lets a run socket open without the owner check. Only the
// deliberately broken build of `idflow verify`'s self-test (tag
// idflow_broken_ws, docs/VERIFY.md) sets it.
const wsAnyRun = false
