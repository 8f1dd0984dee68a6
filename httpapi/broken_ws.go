//go:build idflow_broken_ws

package httpapi

// wsAnyRun, in this deliberately broken build, lets any user open the
// event socket of any run. It exists so that the self-test of `idflow
// verify` can show the verifier catches it (docs/VERIFY.md). Never ship it.
const wsAnyRun = true
