// Package events fans run events out to subscribers. Memory is the
// in-process bus; the redis package implements the same idflow.EventBus
// across replicas.
package events

import (
	"context"
	"net/url"
	"sync"

	"github.com/idflow/idflow"
)

// DefaultBuffer is how many events a subscriber may fall behind before it is
// dropped.
const DefaultBuffer = 256

// Topic is the channel of one owner's run. Both parts are escaped so that
// no id can name another user's topic.
func Topic(userID, runID string) string {
	return url.QueryEscape(userID) + "/" + url.QueryEscape(runID)
}

// Memory is an in-process EventBus.
type Memory struct {
	buffer int

	mu     sync.RWMutex
	topics map[string]map[*subscription]struct{}
}

// NewMemory returns a bus whose subscribers buffer up to buffer events.
func NewMemory(buffer int) *Memory {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	return &Memory{buffer: buffer, topics: map[string]map[*subscription]struct{}{}}
}

// Publish delivers e to the subscribers of its owner's run. It never blocks:
// a subscriber whose buffer is full is dropped.
func (m *Memory) Publish(_ context.Context, e idflow.Event) error {
	m.Deliver(Topic(e.UserID, e.RunID), e)
	return nil
}

// Deliver hands e to the local subscribers of topic (the Redis bus calls it
// for messages from other replicas).
func (m *Memory) Deliver(topic string, e idflow.Event) {
	m.mu.RLock()
	var slow []*subscription
	for s := range m.topics[topic] {
		if !s.offer(e) {
			slow = append(slow, s)
		}
	}
	m.mu.RUnlock()
	for _, s := range slow {
		s.drop()
	}
}

// Subscribe implements idflow.EventBus.
func (m *Memory) Subscribe(ctx context.Context, p idflow.Principal, runID string) (idflow.Subscription, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	return m.SubscribeTopic(ctx, Topic(owner, runID)), nil
}

// SubscribeTopic subscribes to a topic computed by Topic.
func (m *Memory) SubscribeTopic(ctx context.Context, topic string) *subscription {
	s := &subscription{ch: make(chan idflow.Event, m.buffer), bus: m, topic: topic}
	m.mu.Lock()
	if m.topics[topic] == nil {
		m.topics[topic] = map[*subscription]struct{}{}
	}
	m.topics[topic][s] = struct{}{}
	m.mu.Unlock()
	if ctx.Done() != nil {
		context.AfterFunc(ctx, s.Close)
	}
	return s
}

// Subscribers counts the live subscriptions of a topic (tests, metrics).
func (m *Memory) Subscribers(topic string) int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.topics[topic])
}

func (m *Memory) remove(s *subscription) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if subs := m.topics[s.topic]; subs != nil {
		delete(subs, s)
		if len(subs) == 0 {
			delete(m.topics, s.topic)
		}
	}
}

type subscription struct {
	ch    chan idflow.Event
	bus   *Memory
	topic string

	mu      sync.Mutex
	closed  bool
	dropped bool
}

func (s *subscription) Events() <-chan idflow.Event { return s.ch }

func (s *subscription) Dropped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// offer sends without blocking; false means the buffer is full.
func (s *subscription) offer(e idflow.Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return true
	}
	select {
	case s.ch <- e:
		return true
	default:
		return false
	}
}

func (s *subscription) drop() {
	s.mu.Lock()
	s.dropped = true
	s.mu.Unlock()
	s.Close()
}

func (s *subscription) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.ch)
	s.mu.Unlock()
	s.bus.remove(s)
}
