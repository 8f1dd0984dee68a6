package budget

import (
	"context"
	"sync"
	"time"
)

// Memory is a Counter in this process: for one replica (and dev). Counters
// past their expiry are dropped as new ones come, so memory follows the
// users active in the current month.
type Memory struct {
	now   func() time.Time
	mu    sync.Mutex
	n     map[string]memCount
	added int
}

type memCount struct {
	n       int64
	expires time.Time
}

// NewMemory returns a Memory counter on the clock now (nil: time.Now).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, n: map[string]memCount{}}
}

func (m *Memory) Reserve(_ context.Context, keys []Key, n int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for i, k := range keys {
		if k.Limit > 0 && m.get(k, now)+n > k.Limit {
			return i, nil
		}
	}
	m.add(keys, n, now)
	return -1, nil
}

func (m *Memory) Add(_ context.Context, keys []Key, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.add(keys, n, m.now())
	return nil
}

func (m *Memory) Get(_ context.Context, keys []Key) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	out := make([]int64, len(keys))
	for i, k := range keys {
		out[i] = m.get(k, now)
	}
	return out, nil
}

func (m *Memory) Reset(_ context.Context, keys []Key) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.n, k.Name)
	}
	return nil
}

func (m *Memory) get(k Key, now time.Time) int64 {
	c, ok := m.n[k.Name]
	if !ok || !now.Before(c.expires) {
		return 0
	}
	return c.n
}

func (m *Memory) add(keys []Key, n int64, now time.Time) {
	for _, k := range keys {
		c := m.n[k.Name]
		if !now.Before(c.expires) {
			c = memCount{}
			m.added++
		}
		m.n[k.Name] = memCount{n: c.n + n, expires: now.Add(k.TTL)}
	}
	if m.added > 1024 {
		m.added = 0
		for name, c := range m.n {
			if !now.Before(c.expires) {
				delete(m.n, name)
			}
		}
	}
}

// Len is how many counters m holds (for tests of its bound).
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.n)
}
