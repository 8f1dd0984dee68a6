package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"strings"
	"unicode"

	"github.com/idflow/idflow"
)

const (
	documentCols     = `id, user_id, COALESCE(app_id, ''), filename, content_type, size, sha256, fact_count, created_at, updated_at`
	listDocumentsSQL = `SELECT ` + documentCols + ` FROM documents WHERE user_id = ?`
)

func scanDocument(r rowScanner) (idflow.Document, error) {
	var d idflow.Document
	var created, updated int64
	err := r.Scan(&d.ID, &d.UserID, &d.AppID, &d.Filename, &d.ContentType, &d.Size, &d.SHA256, &d.FactCount, &created, &updated)
	d.CreatedAt, d.UpdatedAt = fromNanos(created), fromNanos(updated)
	return d, err
}

func documentKey(d idflow.Document) cursor { return cursor{Key: nanos(d.CreatedAt), ID: d.ID} }

// CreateDocument records d and one fact per chunk in one transaction. A
// non-empty AppID must name the caller's own app. d.ID is kept when it is a
// document id (the service mints it first, to store the bytes under it);
// otherwise a new one is minted.
func (db *DB) CreateDocument(ctx context.Context, p idflow.Principal, d idflow.Document, chunks []string) (idflow.Document, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Document{}, err
	}
	id := d.ID
	if !strings.HasPrefix(id, idflow.PrefixDocument) {
		id = idflow.NewID(idflow.PrefixDocument)
	}
	now := db.now()
	d = idflow.Document{ID: id, UserID: owner, AppID: d.AppID, Filename: d.Filename,
		ContentType: d.ContentType, Size: d.Size, SHA256: d.SHA256, FactCount: len(chunks), CreatedAt: now, UpdatedAt: now}
	err = db.tx(ctx, "create document", func(tx *sql.Tx) error {
		if err := requireOwned(ctx, tx, "apps", "app", owner, d.AppID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO documents (id, user_id, app_id, filename, content_type, size, sha256,
			fact_count, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			d.ID, owner, nullable(d.AppID), d.Filename, d.ContentType, d.Size, d.SHA256, d.FactCount, nanos(now), nanos(now)); err != nil {
			return err
		}
		ins, err := prepareFactInsert(ctx, tx)
		if err != nil {
			return err
		}
		defer ins.close()
		for _, chunk := range chunks {
			t := db.now()
			f := idflow.Fact{ID: idflow.NewID(idflow.PrefixFact), UserID: owner, Content: chunk, SourceDocumentID: d.ID,
				CreatedAt: t, UpdatedAt: t}
			if err := ins.exec(ctx, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return idflow.Document{}, err
	}
	return d, nil
}

func (db *DB) GetDocument(ctx context.Context, p idflow.Principal, id string) (idflow.Document, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Document{}, err
	}
	return getOne(ctx, db.r, "document", `SELECT `+documentCols+` FROM documents WHERE user_id = ? AND id = ?`, scanDocument, owner, id)
}

func (db *DB) ListDocuments(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Document], error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.List[idflow.Document]{Items: []idflow.Document{}}, err
	}
	return list(ctx, db.r, listDocumentsSQL, []any{owner}, byCreated, false, page, scanDocument, documentKey)
}

// DeleteDocument deletes the document and the facts made from it.
func (db *DB) DeleteDocument(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return db.tx(ctx, "delete document", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM facts WHERE user_id = ? AND source_document_id = ?`, owner, id); err != nil {
			return err
		}
		return deleteOwned(ctx, tx, "documents", "document", owner, id)
	})
}

const (
	factCols     = `id, user_id, content, COALESCE(source_document_id, ''), created_at, updated_at`
	listFactsSQL = `SELECT ` + factCols + ` FROM facts WHERE user_id = ?`
)

// factInsert writes facts and their full-text entries in one transaction.
type factInsert struct{ fact, fts *sql.Stmt }

func prepareFactInsert(ctx context.Context, tx *sql.Tx) (*factInsert, error) {
	fact, err := tx.PrepareContext(ctx, `INSERT INTO facts (id, user_id, content, source_document_id, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING pk`)
	if err != nil {
		return nil, err
	}
	fts, err := tx.PrepareContext(ctx, `INSERT INTO facts_fts (rowid, body, user_id) VALUES (?, ?, ?)`)
	if err != nil {
		fact.Close()
		return nil, err
	}
	return &factInsert{fact: fact, fts: fts}, nil
}

func (i *factInsert) exec(ctx context.Context, f idflow.Fact) error {
	var pk int64
	err := i.fact.QueryRowContext(ctx, f.ID, f.UserID, f.Content, nullable(f.SourceDocumentID), nanos(f.CreatedAt), nanos(f.UpdatedAt)).
		Scan(&pk)
	if err != nil {
		return err
	}
	_, err = i.fts.ExecContext(ctx, pk, ftsText(f.UserID, f.Content), f.UserID)
	return err
}

func (i *factInsert) close() {
	i.fact.Close()
	i.fts.Close()
}

func scanFact(r rowScanner) (idflow.Fact, error) {
	var f idflow.Fact
	var created, updated int64
	err := r.Scan(&f.ID, &f.UserID, &f.Content, &f.SourceDocumentID, &created, &updated)
	f.CreatedAt, f.UpdatedAt = fromNanos(created), fromNanos(updated)
	return f, err
}

func factKey(f idflow.Fact) cursor { return cursor{Key: nanos(f.CreatedAt), ID: f.ID} }

// CreateFact records a fact; a non-empty SourceDocumentID must name the
// caller's own document.
func (db *DB) CreateFact(ctx context.Context, p idflow.Principal, f idflow.Fact) (idflow.Fact, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Fact{}, err
	}
	now := db.now()
	f = idflow.Fact{ID: idflow.NewID(idflow.PrefixFact), UserID: owner, Content: f.Content,
		SourceDocumentID: f.SourceDocumentID, CreatedAt: now, UpdatedAt: now}
	err = db.tx(ctx, "create fact", func(tx *sql.Tx) error {
		if err := requireOwned(ctx, tx, "documents", "document", owner, f.SourceDocumentID); err != nil {
			return err
		}
		ins, err := prepareFactInsert(ctx, tx)
		if err != nil {
			return err
		}
		defer ins.close()
		return ins.exec(ctx, f)
	})
	if err != nil {
		return idflow.Fact{}, err
	}
	return f, nil
}

func (db *DB) GetFact(ctx context.Context, p idflow.Principal, id string) (idflow.Fact, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Fact{}, err
	}
	return getOne(ctx, db.r, "fact", `SELECT `+factCols+` FROM facts WHERE `+factOwnerPredicate+` AND id = ?`, scanFact, owner, id)
}

func (db *DB) ListFacts(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Fact], error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.List[idflow.Fact]{Items: []idflow.Fact{}}, err
	}
	return db.listFacts(ctx, owner, page)
}

// Admin fact lists read the facts of a user seen in the admin's tenant (any
// user seen, for a platform admin): the tenant comes from the users table,
// in the same statement as the facts.
const (
	adminUserTenantSQL  = `SELECT EXISTS (SELECT 1 FROM users WHERE user_id = ? AND tenant_id = ?)`
	adminUserAllSQL     = `SELECT EXISTS (SELECT 1 FROM users WHERE user_id = ?)`
	adminFactsTenantSQL = `SELECT ` + factCols + ` FROM facts WHERE user_id = ?
		AND EXISTS (SELECT 1 FROM users AS u WHERE u.user_id = facts.user_id AND u.tenant_id = ?)`
	adminFactsAllSQL = `SELECT ` + factCols + ` FROM facts WHERE user_id = ?
		AND EXISTS (SELECT 1 FROM users AS u WHERE u.user_id = facts.user_id)`
)

// AdminListFacts lists the facts of userID, a user of the admin's scope; a
// user outside it, or never seen, is NotFound("user").
func (db *DB) AdminListFacts(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope, userID string, page idflow.Page) (idflow.List[idflow.Fact], error) {
	out := idflow.List[idflow.Fact]{Items: []idflow.Fact{}}
	tenant, all, err := scope.For(admin)
	if err != nil {
		return out, err
	}
	if userID == "" {
		return out, idflow.Errorf(idflow.EINVALID, "a user id is required")
	}
	exists, query, args := adminUserTenantSQL, adminFactsTenantSQL, []any{userID, tenant}
	if all {
		exists, query, args = adminUserAllSQL, adminFactsAllSQL, []any{userID}
	}
	err = db.read(ctx, func(tx *sql.Tx) error {
		var seen bool
		if err := tx.QueryRowContext(ctx, exists, args...).Scan(&seen); err != nil {
			return err
		}
		if !seen {
			return idflow.NotFound("user")
		}
		out, err = list(ctx, tx, query, args, byCreated, false, page, scanFact, factKey)
		return err
	})
	return out, fail("admin list facts", err)
}

func (db *DB) listFacts(ctx context.Context, owner string, page idflow.Page) (idflow.List[idflow.Fact], error) {
	return list(ctx, db.r, listFactsSQL, []any{owner}, byCreated, false, page, scanFact, factKey)
}

func (db *DB) DeleteFact(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return db.tx(ctx, "delete fact", func(tx *sql.Tx) error {
		return deleteOwned(ctx, tx, "facts", "fact", owner, id)
	})
}

// Search limits.
const (
	defaultSearchLimit = 10
	maxSearchLimit     = 50
	maxSearchTerms     = 32
)

// searchSQL ranks with FTS5's bm25 over the caller's own terms (see
// ftsText). The owner is matched three times: by the namespace of every
// term, by the user_id stored in the full-text table, and on the facts row.
// CROSS JOIN keeps the full-text match as the outer loop.
const searchSQL = `SELECT f.id, f.user_id, f.content, COALESCE(f.source_document_id, ''), f.created_at, f.updated_at, -m.rank
FROM (SELECT rowid, rank FROM facts_fts WHERE facts_fts MATCH ? AND user_id = ? ORDER BY rank LIMIT ?) AS m
CROSS JOIN facts AS f ON f.pk = m.rowid
WHERE f.user_id = ?
ORDER BY m.rank, f.id`

// SearchFacts ranks the caller's facts against query, best first. Score is
// the negated bm25: positive, higher is better. The scores use the caller's
// own document frequencies, so they reveal nothing of other users' facts
// (beyond the total number of facts, which bm25 also uses).
func (db *DB) SearchFacts(ctx context.Context, p idflow.Principal, query string, limit int) ([]idflow.ScoredFact, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	limit, err = pageLimit(limit, defaultSearchLimit, maxSearchLimit)
	if err != nil {
		return nil, err
	}
	out := []idflow.ScoredFact{}
	match, ok := ftsQuery(owner, query)
	if !ok {
		return out, nil
	}
	rows, err := db.r.QueryContext(ctx, searchSQL, match, owner, limit, owner)
	if err != nil {
		return nil, fail("search facts", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s idflow.ScoredFact
		var created, updated int64
		f := &s.Fact
		if err := rows.Scan(&f.ID, &f.UserID, &f.Content, &f.SourceDocumentID, &created, &updated, &s.Score); err != nil {
			return nil, fail("search facts", err)
		}
		f.CreatedAt, f.UpdatedAt = fromNanos(created), fromNanos(updated)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fail("search facts", err)
	}
	return out, nil
}

// ftsWords splits text into runs of letters, digits and private-use
// characters: the characters FTS5's unicode61 tokenizer keeps in a token.
func ftsWords(text string) []string {
	return strings.FieldsFunc(text, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsNumber(r) && !unicode.Is(unicode.Co, r)
	})
}

// ftsNamespace is the prefix of every full-text token of owner: 64 bits of
// SHA-256(owner) written with digits and consonants only, because the
// porter stemmer looks at vowels: "<namespace>meetings" stems like
// "meetings". Two owners sharing a namespace would only share ranking
// statistics: every search also filters on user_id.
func ftsNamespace(owner string) string {
	const alphabet = "0123456789bcdfgh"
	sum := sha256.Sum256([]byte(owner))
	ns := make([]byte, 16)
	for i := range ns {
		ns[i] = alphabet[sum[i/2]>>(4*(1-i%2))&0xf]
	}
	return string(ns)
}

// ftsText is the indexed body of a fact: its words, each prefixed with the
// owner's namespace. The tokenizer then folds case and diacritics and stems
// each token as a whole.
func ftsText(owner, content string) string {
	ns := ftsNamespace(owner)
	var b strings.Builder
	for _, w := range ftsWords(content) {
		b.WriteString(ns)
		b.WriteString(w)
		b.WriteByte(' ')
	}
	return b.String()
}

// ftsQuery turns free text into an FTS5 query that carries no FTS5 syntax
// from the user: each word becomes a double-quoted, namespaced term (a word
// holds no quote), and the terms are ORed. ok is false when the text has no
// word.
func ftsQuery(owner, text string) (match string, ok bool) {
	ns := ftsNamespace(owner)
	seen := make(map[string]bool)
	var terms []string
	for _, w := range ftsWords(text) {
		w = strings.ToLower(w)
		if seen[w] {
			continue
		}
		seen[w] = true
		terms = append(terms, `"`+ns+w+`"`)
		if len(terms) == maxSearchTerms {
			break
		}
	}
	return strings.Join(terms, " OR "), len(terms) > 0
}
