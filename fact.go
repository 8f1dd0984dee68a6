package idflow

import (
	"context"
	"time"
)

// Fact is a remembered piece of text: written by the user, or a chunk of
// a document (SourceDocumentID).
type Fact struct {
	ID               string    `json:"id"`
	UserID           string    `json:"user_id"`
	Content          string    `json:"content"`
	SourceDocumentID string    `json:"source_document_id,omitempty"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// Fact limits, in characters.
const (
	MaxFactLen  = 8 << 10
	MaxQueryLen = 1000 // a memory search's query
)

// Validate trims the fact's content and checks it: required, CheckText.
func (f *Fact) Validate() error {
	var err error
	f.Content, err = CheckText("content", f.Content, MaxFactLen, true)
	return err
}

// ScoredFact is a search hit.
type ScoredFact struct {
	Fact  Fact    `json:"fact"`
	Score float64 `json:"score"`
}

// FactStore keeps facts and searches them.
type FactStore interface {
	CreateFact(ctx context.Context, p Principal, f Fact) (Fact, error)
	GetFact(ctx context.Context, p Principal, id string) (Fact, error)
	ListFacts(ctx context.Context, p Principal, page Page) (List[Fact], error)
	DeleteFact(ctx context.Context, p Principal, id string) error
	// SearchFacts ranks the caller's facts against query, best first.
	SearchFacts(ctx context.Context, p Principal, query string, limit int) ([]ScoredFact, error)
	// AdminListFacts reads another user's facts, audited by the caller. The
	// user must have been seen (TouchUser) in the scope's tenant: a user of
	// another tenant, or one never seen, is NotFound("user").
	AdminListFacts(ctx context.Context, admin Principal, scope AdminScope, userID string, page Page) (List[Fact], error)
}
