// Package cache holds the scoped cache every handler uses and the bounded
// in-memory backend. Keys are built here, from the Principal, and nowhere
// else: u:{user}:{kind}:{id}, so no
// key built for one user can name another user's entry.
package cache

import (
	"container/list"
	"context"
	"net/url"
	"sync"
	"time"

	"github.com/idflow/idflow"
)

// Scoped is a cache whose every key belongs to one user.
type Scoped struct {
	backend idflow.CacheBackend
	ttl     time.Duration
}

// NewScoped wraps backend; ttl bounds every entry.
func NewScoped(backend idflow.CacheBackend, ttl time.Duration) *Scoped {
	return &Scoped{backend: backend, ttl: ttl}
}

// Key is the backend key of (p, kind, id). The user id and id are escaped
// so that no value can forge another user's prefix.
func Key(p idflow.Principal, kind, id string) (string, error) {
	owner, err := p.Owner()
	if err != nil {
		return "", err
	}
	return "u:" + url.QueryEscape(owner) + ":" + kind + ":" + url.QueryEscape(id), nil
}

// Get returns the cached value of (p, kind, id).
func (s *Scoped) Get(ctx context.Context, p idflow.Principal, kind, id string) ([]byte, bool, error) {
	k, err := Key(p, kind, id)
	if err != nil {
		return nil, false, err
	}
	return s.backend.Get(ctx, k)
}

// Set caches value as (p, kind, id).
func (s *Scoped) Set(ctx context.Context, p idflow.Principal, kind, id string, value []byte) error {
	k, err := Key(p, kind, id)
	if err != nil {
		return err
	}
	return s.backend.Set(ctx, k, value, s.ttl)
}

// Delete forgets (p, kind, id).
func (s *Scoped) Delete(ctx context.Context, p idflow.Principal, kind, id string) error {
	k, err := Key(p, kind, id)
	if err != nil {
		return err
	}
	return s.backend.Delete(ctx, k)
}

// Memory is a bounded LRU cache with per-entry expiry.
type Memory struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[string]*list.Element
	now   func() time.Time
}

type memEntry struct {
	key     string
	value   []byte
	expires time.Time
}

// NewMemory returns a cache holding at most max entries.
func NewMemory(max int) *Memory {
	if max <= 0 {
		max = 10000
	}
	return &Memory{max: max, ll: list.New(), items: map[string]*list.Element{}, now: time.Now}
}

func (m *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.items[key]
	if !ok {
		return nil, false, nil
	}
	e := el.Value.(*memEntry)
	if !m.now().Before(e.expires) {
		m.ll.Remove(el)
		delete(m.items, key)
		return nil, false, nil
	}
	m.ll.MoveToFront(el)
	return e.value, true, nil
}

func (m *Memory) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp := m.now().Add(ttl)
	if el, ok := m.items[key]; ok {
		e := el.Value.(*memEntry)
		e.value, e.expires = value, exp
		m.ll.MoveToFront(el)
		return nil
	}
	m.items[key] = m.ll.PushFront(&memEntry{key: key, value: value, expires: exp})
	for m.ll.Len() > m.max {
		last := m.ll.Back()
		m.ll.Remove(last)
		delete(m.items, last.Value.(*memEntry).key)
	}
	return nil
}

func (m *Memory) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.items[key]; ok {
		m.ll.Remove(el)
		delete(m.items, key)
	}
	return nil
}

// Len is the number of entries (tests).
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ll.Len()
}
