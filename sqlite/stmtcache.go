package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// prepared holds the read pool's statements, each query prepared once and
// bound to every read transaction that runs it (txn.stmt; database/sql
// keeps one prepared statement per connection). Parsing and planning were ~40 % of the store's
// time in GET /api/v1/sessions (docs/BENCHMARKS.md, "Hot path"). Only
// queries built from the store's own constants pass through it, so the set
// is small; past maxPrepared it stops adding and queries unprepared.
type prepared struct {
	db *sql.DB
	mu sync.RWMutex
	m  map[string]*sql.Stmt
}

const maxPrepared = 64

func (p *prepared) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	p.mu.RLock()
	st := p.m[query]
	p.mu.RUnlock()
	if st != nil {
		return st, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.m[query]; st != nil {
		return st, nil
	}
	if len(p.m) >= maxPrepared {
		return nil, nil
	}
	st, err := p.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if p.m == nil {
		p.m = map[string]*sql.Stmt{}
	}
	p.m[query] = st
	return st, nil
}
