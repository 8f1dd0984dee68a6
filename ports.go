package idflow

import (
	"context"
	"time"
)

// ChatTurn is one message given to a model.
type ChatTurn struct {
	Role    string `json:"role"` // system, user, assistant
	Content string `json:"content"`
}

// ChatModel answers a conversation on behalf of p. Implementations must not
// send p's raw user id anywhere (the OpenAI client sends a hash of it).
type ChatModel interface {
	Reply(ctx context.Context, p Principal, model string, turns []ChatTurn) (string, error)
}

// CacheBackend is a raw key/value cache (memory, Redis, memcached). Handlers
// never see it: they get a cache.Scoped, whose keys derive from the Principal.
type CacheBackend interface {
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, key string) error
}

// BlobStore keeps documents' original bytes, under a root that belongs to
// the Principal; a document id can never name another user's file.
type BlobStore interface {
	PutBlob(ctx context.Context, p Principal, id string, data []byte) error
	GetBlob(ctx context.Context, p Principal, id string) ([]byte, error)
	DeleteBlob(ctx context.Context, p Principal, id string) error
}
