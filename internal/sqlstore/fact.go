package sqlstore

import (
	"context"

	"github.com/idflow/idflow"
)

const (
	factCols     = `id, user_id, content, COALESCE(source_document_id, ''), created_at, updated_at`
	ListFactsSQL = `SELECT ` + factCols + ` FROM facts WHERE user_id = $1`
	// FactInsertCols are the columns of a fact InsertFacts writes.
	FactInsertCols = `id, user_id, content, source_document_id, created_at, updated_at`
)

func scanFact(r Row) (idflow.Fact, error) {
	var f idflow.Fact
	err := r.Scan(&f.ID, &f.UserID, &f.Content, &f.SourceDocumentID, &f.CreatedAt, &f.UpdatedAt)
	return f, err
}

func factKey(f idflow.Fact) Cursor { return createdKey(f.CreatedAt, f.ID) }

// CreateFact records a fact; a non-empty SourceDocumentID must name the
// caller's own document.
func (s *Store) CreateFact(ctx context.Context, p idflow.Principal, f idflow.Fact) (idflow.Fact, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Fact{}, err
	}
	now := s.clock.now()
	f = idflow.Fact{ID: idflow.NewID(idflow.PrefixFact), UserID: owner, Content: f.Content,
		SourceDocumentID: f.SourceDocumentID, CreatedAt: now, UpdatedAt: now}
	err = s.write(ctx, "create fact", owner, func(tx Tx) error {
		if err := requireOwned(ctx, tx, "documents", "document", owner, f.SourceDocumentID); err != nil {
			return err
		}
		return s.b.InsertFacts(ctx, tx, []idflow.Fact{f})
	})
	if err != nil {
		return idflow.Fact{}, err
	}
	return f, nil
}

func (s *Store) GetFact(ctx context.Context, p idflow.Principal, id string) (idflow.Fact, error) {
	return getOwned(ctx, s, p, "fact", `SELECT `+factCols+` FROM facts WHERE `+factOwnerPredicate+` AND id = $2`, scanFact, id)
}

func (s *Store) ListFacts(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Fact], error) {
	return listOwned(ctx, s, p, "list facts", ListFactsSQL, nil, ByCreated, page, scanFact, factKey)
}

func (s *Store) DeleteFact(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return s.write(ctx, "delete fact", owner, func(tx Tx) error {
		return deleteOwned(ctx, tx, "facts", "fact", owner, id)
	})
}

// Admin fact lists read the facts of a user seen in the admin's tenant (any
// user seen, for a platform admin): the tenant comes from the users table,
// in the same statement as the facts (and, on PostgreSQL, again in the
// admin_read policy).
const (
	adminUserTenantSQL  = `SELECT EXISTS (SELECT 1 FROM users WHERE user_id = $1 AND tenant_id = $2)`
	adminUserAllSQL     = `SELECT EXISTS (SELECT 1 FROM users WHERE user_id = $1)`
	adminFactsTenantSQL = `SELECT ` + factCols + ` FROM facts WHERE user_id = $1
		AND EXISTS (SELECT 1 FROM users AS u WHERE u.user_id = facts.user_id AND u.tenant_id = $2)`
	adminFactsAllSQL = `SELECT ` + factCols + ` FROM facts WHERE user_id = $1
		AND EXISTS (SELECT 1 FROM users AS u WHERE u.user_id = facts.user_id)`
)

// AdminListFacts lists the facts of userID, a user of the admin's scope,
// on the admin path; a user outside it, or never seen, is
// NotFound("user").
func (s *Store) AdminListFacts(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope, userID string, page idflow.Page) (idflow.List[idflow.Fact], error) {
	out := idflow.List[idflow.Fact]{Items: []idflow.Fact{}}
	if _, _, err := scope.For(admin); err != nil {
		return out, err
	}
	if userID == "" {
		return out, idflow.Errorf(idflow.EINVALID, "a user id is required")
	}
	err := s.admin(ctx, "admin list facts", admin, scope, func(tx Tx, tenant string, all bool) error {
		exists, query, args := adminUserTenantSQL, adminFactsTenantSQL, []any{userID, tenant}
		if all {
			exists, query, args = adminUserAllSQL, adminFactsAllSQL, []any{userID}
		}
		var seen bool
		if err := tx.QueryRow(ctx, exists, args...).Scan(&seen); err != nil {
			return err
		}
		if !seen {
			return idflow.NotFound("user")
		}
		var err error
		out, err = list(ctx, tx, query, args, ByCreated, false, page, scanFact, factKey)
		return err
	})
	if err != nil {
		return idflow.List[idflow.Fact]{Items: []idflow.Fact{}}, err
	}
	return out, nil
}

// Search limits.
const (
	defaultSearchLimit = 10
	maxSearchLimit     = 50
	// MaxSearchTerms bounds the words of a query a backend searches for.
	MaxSearchTerms = 32
)

// SearchFacts ranks the caller's facts against query, best first, with
// the backend's full-text search (Backend.Search). Score is positive,
// higher is better, and computed from the caller's own facts only, so it
// reveals nothing of other users' facts.
func (s *Store) SearchFacts(ctx context.Context, p idflow.Principal, query string, limit int) ([]idflow.ScoredFact, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	limit, err = PageLimit(limit, defaultSearchLimit, maxSearchLimit)
	if err != nil {
		return nil, err
	}
	q, args, ok := s.b.Search(owner, query, limit)
	if !ok {
		return []idflow.ScoredFact{}, nil
	}
	var out []idflow.ScoredFact
	err = s.read(ctx, "search facts", owner, func(tx Tx) error {
		out, err = collect(ctx, tx, q, func(r Row) (idflow.ScoredFact, error) {
			var sf idflow.ScoredFact
			f := &sf.Fact
			err := r.Scan(&f.ID, &f.UserID, &f.Content, &f.SourceDocumentID, &f.CreatedAt, &f.UpdatedAt, &sf.Score)
			return sf, err
		}, args...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
