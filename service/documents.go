package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"

	"github.com/idflow/idflow"
)

// ChunkSize is the target size of a fact made from a document, in bytes.
const ChunkSize = 800

// IngestInput is one uploaded document.
type IngestInput struct {
	Filename    string
	ContentType string
	Content     []byte
	AppID       string
}

// Ingest keeps the original bytes under the caller's file root and turns the
// text into facts. If recording fails the stored bytes are removed again.
func (s *Service) Ingest(ctx context.Context, p idflow.Principal, in IngestInput) (idflow.Document, error) {
	if err := s.policy.Check(p, "etl.ingest"); err != nil {
		s.Audit(ctx, p, "document.ingest", "document", err)
		return idflow.Document{}, err
	}
	named := idflow.Document{Filename: in.Filename}
	if err := named.Validate(); err != nil {
		return idflow.Document{}, err
	}
	if len(in.Content) == 0 {
		return idflow.Document{}, idflow.Errorf(idflow.EINVALID, "content is empty")
	}
	if !utf8.Valid(in.Content) {
		return idflow.Document{}, idflow.Errorf(idflow.EINVALID, "only UTF-8 text documents can be ingested")
	}
	ct := in.ContentType
	if ct == "" || ct == "application/octet-stream" {
		ct = "text/plain; charset=utf-8"
	}
	if in.AppID != "" {
		if _, err := s.store.GetApp(ctx, p, in.AppID); err != nil {
			s.Audit(ctx, p, "document.ingest", "app/"+in.AppID, err)
			return idflow.Document{}, err
		}
	}
	sum := sha256.Sum256(in.Content)
	doc := idflow.Document{
		ID: idflow.NewID(idflow.PrefixDocument), AppID: in.AppID, Filename: named.Filename, ContentType: ct,
		Size: int64(len(in.Content)), SHA256: hex.EncodeToString(sum[:]),
	}
	chunks := Chunk(string(in.Content), ChunkSize)
	return auditedID(s, ctx, p, "document.ingest", "document", func(d idflow.Document) string { return d.ID }, func() (idflow.Document, error) {
		if err := s.blobs.PutBlob(ctx, p, doc.ID, in.Content); err != nil {
			return idflow.Document{}, err
		}
		d, err := s.store.CreateDocument(ctx, p, doc, chunks)
		if err != nil {
			if derr := s.blobs.DeleteBlob(context.WithoutCancel(ctx), p, doc.ID); derr != nil {
				s.log.ErrorContext(ctx, "orphaned document bytes", "document_id", doc.ID, "err", derr)
			}
			return idflow.Document{}, err
		}
		return d, nil
	})
}

func (s *Service) GetDocument(ctx context.Context, p idflow.Principal, id string) (idflow.Document, error) {
	return deniedOnly(s, ctx, p, "document.get", "document/"+id, func() (idflow.Document, error) { return s.store.GetDocument(ctx, p, id) })
}

func (s *Service) ListDocuments(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Document], error) {
	return s.store.ListDocuments(ctx, p, page)
}

// DocumentContent returns a document and its original bytes.
func (s *Service) DocumentContent(ctx context.Context, p idflow.Principal, id string) (idflow.Document, []byte, error) {
	d, err := s.GetDocument(ctx, p, id)
	if err != nil {
		return d, nil, err
	}
	b, err := s.blobs.GetBlob(ctx, p, id)
	return d, b, err
}

// DeleteDocument removes the document, its facts, then its bytes.
func (s *Service) DeleteDocument(ctx context.Context, p idflow.Principal, id string) error {
	_, err := audited(s, ctx, p, "document.delete", "document/"+id, func() (struct{}, error) {
		return struct{}{}, s.store.DeleteDocument(ctx, p, id)
	})
	if err != nil {
		return err
	}
	if err := s.blobs.DeleteBlob(ctx, p, id); err != nil {
		s.log.ErrorContext(ctx, "document bytes not removed", "document_id", id, "err", err)
	}
	return nil
}

// Chunk splits text into pieces of at most size bytes, preferring paragraph,
// then sentence, then word boundaries, never splitting a UTF-8 sequence.
// Blank pieces are dropped.
func Chunk(text string, size int) []string {
	var out []string
	for _, para := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n\n") {
		para = strings.TrimSpace(para)
		for len(para) > size {
			cut := size
			for cut > 0 && !utf8.RuneStart(para[cut]) {
				cut--
			}
			if b := wordBoundary(para[:cut]); b > 0 {
				cut = b
			}
			out = append(out, strings.TrimSpace(para[:cut]))
			para = strings.TrimSpace(para[cut:])
		}
		if para != "" {
			out = append(out, para)
		}
	}
	return out
}

// wordBoundary is the end of the last sentence, line or word in the second
// half of s, or 0.
func wordBoundary(s string) int {
	for _, sep := range []string{". ", "\n", " "} {
		if i := strings.LastIndex(s, sep); i > len(s)/2 {
			return i + len(sep)
		}
	}
	return 0
}
