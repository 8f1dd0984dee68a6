package mcpclient

import (
	"container/list"
	"sync"
	"time"
)

// lru is a bounded map whose entries expire; the least recently used
// entry goes first when it is full.
type lru[K comparable, V any] struct {
	max int
	now func() time.Time

	mu    sync.Mutex
	items map[K]*list.Element
	order *list.List // of *lruEntry, most recently used at the front
}

type lruEntry[K comparable, V any] struct {
	key     K
	val     V
	expires time.Time
}

func newLRU[K comparable, V any](max int, now func() time.Time) *lru[K, V] {
	return &lru[K, V]{max: max, now: now, items: map[K]*list.Element{}, order: list.New()}
}

func (l *lru[K, V]) get(k K) (V, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	ent := e.Value.(*lruEntry[K, V])
	if !l.now().Before(ent.expires) {
		l.order.Remove(e)
		delete(l.items, k)
		var zero V
		return zero, false
	}
	l.order.MoveToFront(e)
	return ent.val, true
}

func (l *lru[K, V]) put(k K, v V, ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	exp := l.now().Add(ttl)
	if e, ok := l.items[k]; ok {
		ent := e.Value.(*lruEntry[K, V])
		ent.val, ent.expires = v, exp
		l.order.MoveToFront(e)
		return
	}
	for len(l.items) >= l.max {
		back := l.order.Back()
		l.order.Remove(back)
		delete(l.items, back.Value.(*lruEntry[K, V]).key)
	}
	l.items[k] = l.order.PushFront(&lruEntry[K, V]{key: k, val: v, expires: exp})
}
