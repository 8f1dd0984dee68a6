package idflow

import (
	"context"
	"time"
)

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
