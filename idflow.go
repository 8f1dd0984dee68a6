// Package idflow holds the domain of idflow: the Principal that carries one
// verified identity, the domain types, the typed error, and the interfaces
// that the store, cache and event-bus packages implement. It depends on
// nothing but the standard library, so every other package can point at it.
package idflow
