package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/idflow/idflow"
)

// The BlobStore on PostgreSQL: when idflow runs on more than one machine,
// documents' original bytes live in document_blobs (replicas share no disk), a user table
// like any other: keyed by (user_id, document_id), behind the owner
// predicate and the owner_rows policy. A document id can only ever name one
// of the caller's own blobs.

// PutBlob stores (or replaces) the bytes of p's document id.
func (db *DB) PutBlob(ctx context.Context, p idflow.Principal, id string, data []byte) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	if !idflow.IsNewID(idflow.PrefixDocument, id) {
		return idflow.Errorf(idflow.EINVALID, "invalid document id")
	}
	if data == nil {
		data = []byte{}
	}
	return fail("put blob", db.asUser(ctx, owner, readWrite, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO document_blobs (user_id, document_id, bytes, created_at) VALUES ($1, $2, $3, now())
			ON CONFLICT (user_id, document_id) DO UPDATE SET bytes = excluded.bytes, created_at = excluded.created_at`,
			owner, id, data)
		return err
	}))
}

// GetBlob answers the bytes of p's document id; another user's, or none, is
// not found.
func (db *DB) GetBlob(ctx context.Context, p idflow.Principal, id string) ([]byte, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	var b []byte
	err = db.asUser(ctx, owner, readOnly, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT bytes FROM document_blobs WHERE user_id = $1 AND document_id = $2`, owner, id).Scan(&b)
		if errors.Is(err, pgx.ErrNoRows) {
			return idflow.NotFound("document")
		}
		return err
	})
	if err != nil {
		return nil, fail("get blob", err)
	}
	return b, nil
}

// DeleteBlob removes the bytes of p's document id; removing none is no
// error, as with the file store.
func (db *DB) DeleteBlob(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return fail("delete blob", db.asUser(ctx, owner, readWrite, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM document_blobs WHERE user_id = $1 AND document_id = $2`, owner, id)
		return err
	}))
}

// DeleteBlobs removes every document of p's.
func (db *DB) DeleteBlobs(ctx context.Context, p idflow.Principal) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return fail("delete blobs", db.asUser(ctx, owner, readWrite, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM document_blobs WHERE user_id = $1`, owner)
		return err
	}))
}
