package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// prepared holds a pool's statements (the read pool's, the writer's),
// each query prepared once and bound to every transaction that runs it
// (txn.stmt; database/sql keeps one prepared statement per connection).
// Parsing and planning were ~40 % of the store's time in GET
// /api/v1/sessions, and ~7 % of an audited tool call's CPU on the writer
// (docs/BENCHMARKS.md, "Hot path", "Agent runtime"). Only queries built
// from the store's own constants pass through it, so the set is small;
// past maxPrepared it stops adding and queries unprepared.
//
// A query seen for the first time runs unprepared and is prepared after
// its transaction has given its connection back (prepareMissed):
// preparing needs a connection of the pool, and a transaction that waited
// for one while holding its own could wait forever once every connection
// is held by such a transaction (the writer has only one).
type prepared struct {
	db     *sql.DB
	mu     sync.RWMutex
	m      map[string]*sql.Stmt
	missed map[string]bool
}

const maxPrepared = 128

// stmt answers the prepared statement of query, or nil if it has none yet
// (the query is then noted for prepareMissed).
func (p *prepared) stmt(query string) *sql.Stmt {
	p.mu.RLock()
	st, known := p.m[query], p.missed[query]
	p.mu.RUnlock()
	if st != nil || known {
		return st
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.m)+len(p.missed) < maxPrepared && p.m[query] == nil {
		if p.missed == nil {
			p.missed = map[string]bool{}
		}
		p.missed[query] = true
	}
	return p.m[query]
}

// prepareMissed prepares the queries stmt has noted. The caller must hold
// no connection of the pool. The lock is never held while preparing.
func (p *prepared) prepareMissed(ctx context.Context) {
	p.mu.RLock()
	n := len(p.missed)
	p.mu.RUnlock()
	if n == 0 {
		return
	}
	p.mu.Lock()
	queries := make([]string, 0, len(p.missed))
	for q := range p.missed {
		queries = append(queries, q)
	}
	p.mu.Unlock()
	for _, q := range queries {
		st, err := p.db.PrepareContext(ctx, q)
		p.mu.Lock()
		switch {
		case err != nil:
			// Left noted: the query keeps running unprepared until a
			// later read prepares it.
		case p.m[q] != nil || !p.missed[q]:
			_ = st.Close() // another read prepared it meanwhile
		default:
			if p.m == nil {
				p.m = map[string]*sql.Stmt{}
			}
			p.m[q] = st
			delete(p.missed, q)
		}
		p.mu.Unlock()
	}
}
