package idflow

import (
	"context"
	"path"
	"strings"
	"time"
)

// Document is an ingested file: its bytes are kept by a BlobStore, its
// chunks became facts (FactCount).
type Document struct {
	ID          string    `json:"id"`
	UserID      string    `json:"user_id"`
	AppID       string    `json:"app_id,omitempty"`
	Filename    string    `json:"filename"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	FactCount   int       `json:"fact_count"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// MaxFilenameLen bounds a document's filename, in characters.
const MaxFilenameLen = 255

// Validate keeps the base name of the document's Filename (an upload may
// name a path, with / or \) and checks it: required, CheckText, and not a
// directory name. Every fault answers "filename is required".
func (d *Document) Validate() error {
	name, err := CheckText("filename", path.Base(strings.ReplaceAll(d.Filename, "\\", "/")), MaxFilenameLen, true)
	if err != nil || name == "." || name == ".." || name == "/" {
		return Errorf(EINVALID, "filename is required")
	}
	d.Filename = name
	return nil
}

// DocumentStore keeps documents and the facts made from them.
type DocumentStore interface {
	// CreateDocument records a document and its chunks as facts, atomically.
	CreateDocument(ctx context.Context, p Principal, d Document, chunks []string) (Document, error)
	GetDocument(ctx context.Context, p Principal, id string) (Document, error)
	ListDocuments(ctx context.Context, p Principal, page Page) (List[Document], error)
	// DeleteDocument removes the document and the facts made from it.
	DeleteDocument(ctx context.Context, p Principal, id string) error
}

// BlobStore keeps documents' original bytes, under a root that belongs to
// the Principal; a document id can never name another user's file.
type BlobStore interface {
	PutBlob(ctx context.Context, p Principal, id string, data []byte) error
	GetBlob(ctx context.Context, p Principal, id string) ([]byte, error)
	DeleteBlob(ctx context.Context, p Principal, id string) error
	// DeleteBlobs removes every document of p's (erasure).
	DeleteBlobs(ctx context.Context, p Principal) error
}
