package sqlstore

import (
	"context"

	"github.com/idflow/idflow"
)

const (
	documentCols     = `id, user_id, COALESCE(app_id, ''), filename, content_type, size, sha256, fact_count, created_at, updated_at`
	ListDocumentsSQL = `SELECT ` + documentCols + ` FROM documents WHERE user_id = $1`
)

func scanDocument(r Row) (idflow.Document, error) {
	var d idflow.Document
	err := r.Scan(&d.ID, &d.UserID, &d.AppID, &d.Filename, &d.ContentType, &d.Size, &d.SHA256, &d.FactCount, &d.CreatedAt, &d.UpdatedAt)
	return d, err
}

func documentKey(d idflow.Document) Cursor { return createdKey(d.CreatedAt, d.ID) }

// CreateDocument records d and one fact per chunk in one transaction. A
// non-empty AppID must name the caller's own app. d.ID is kept when it is
// an id NewID(PrefixDocument) made — the service stores the document's
// bytes under the id it minted before recording the document — and minted
// otherwise.
func (s *Store) CreateDocument(ctx context.Context, p idflow.Principal, d idflow.Document, chunks []string) (idflow.Document, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Document{}, err
	}
	id := d.ID
	if !idflow.IsNewID(idflow.PrefixDocument, id) {
		id = idflow.NewID(idflow.PrefixDocument)
	}
	now := s.clock.now()
	d = idflow.Document{ID: id, UserID: owner, AppID: d.AppID, Filename: d.Filename,
		ContentType: d.ContentType, Size: d.Size, SHA256: d.SHA256, FactCount: len(chunks), CreatedAt: now, UpdatedAt: now}
	facts := make([]idflow.Fact, 0, len(chunks))
	for _, chunk := range chunks {
		t := s.clock.now()
		facts = append(facts, idflow.Fact{ID: idflow.NewID(idflow.PrefixFact), UserID: owner, Content: chunk,
			SourceDocumentID: d.ID, CreatedAt: t, UpdatedAt: t})
	}
	err = s.write(ctx, "create document", owner, func(tx Tx) error {
		if err := requireOwned(ctx, tx, "apps", "app", owner, d.AppID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO documents (id, user_id, app_id, filename, content_type, size, sha256,
			fact_count, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			d.ID, owner, nullable(d.AppID), d.Filename, d.ContentType, d.Size, d.SHA256, d.FactCount, now, now); err != nil {
			return err
		}
		if len(facts) == 0 {
			return nil
		}
		return s.b.InsertFacts(ctx, tx, facts)
	})
	if err != nil {
		return idflow.Document{}, err
	}
	return d, nil
}

func (s *Store) GetDocument(ctx context.Context, p idflow.Principal, id string) (idflow.Document, error) {
	return getOwned(ctx, s, p, "document", `SELECT `+documentCols+` FROM documents WHERE user_id = $1 AND id = $2`, scanDocument, id)
}

func (s *Store) ListDocuments(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Document], error) {
	return listOwned(ctx, s, p, "list documents", ListDocumentsSQL, nil, ByCreated, page, scanDocument, documentKey)
}

// DeleteDocument deletes the document and the facts made from it. Its
// bytes are the BlobStore's (DeleteBlob).
func (s *Store) DeleteDocument(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return s.write(ctx, "delete document", owner, func(tx Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM facts WHERE user_id = $1 AND source_document_id = $2`, owner, id); err != nil {
			return err
		}
		return deleteOwned(ctx, tx, "documents", "document", owner, id)
	})
}
