//go:build !idflow_broken_owner

package sqlstore

// factOwnerPredicate scopes GetFact to its owner. Only the deliberately
// broken build of `idflow verify`'s self-test (tag idflow_broken_owner,
// docs/VERIFY.md) drops it.
const factOwnerPredicate = "user_id = $1"
