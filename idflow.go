// Package idflow holds the domain of idflow: the Principal that carries one
// verified identity, the domain types, the typed error, and the interfaces
// that the store, cache and event-bus packages implement. It depends on
// nothing but the standard library, so every other package can point at it.
//
// It is laid out by entity: app.go, session.go (and its messages),
// agent.go, workflow.go, run.go (and its events), document.go, fact.go,
// user.go, audit.go, usage.go, connection.go and browsersession.go each
// hold one entity's type, its filter and patch types and its store
// interface. principal.go and admin.go hold who acts and what an admin may
// read; error.go the typed error; id.go and page.go the ids and list pages
// every entity shares; store.go the whole Store; model.go, tool.go and
// cache.go what the model, tool and cache packages implement. What only
// the SQL backends share (cursors, stored JSON, the run queue) is in
// internal/sqlstore, not here.
package idflow
