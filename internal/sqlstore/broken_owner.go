//go:build idflow_broken_owner

package sqlstore

// factOwnerPredicate, in this deliberately broken build, no longer scopes
// GetFact to its owner: any user reads any fact by its id (on SQLite;
// PostgreSQL's row-level security still refuses). It exists so
// that the self-test of `idflow verify` can show the verifier catches it
// (docs/VERIFY.md). Never ship it.
const factOwnerPredicate = "(user_id = $1 OR 1 = 1)"
