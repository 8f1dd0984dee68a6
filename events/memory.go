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

// chanBuffer is the capacity of a subscription's channel. Events beyond it,
// up to the subscriber's buffer, wait in a queue that a pump goroutine —
// running only while the queue is not empty — moves into the channel in
// order. An idle subscriber (a WebSocket between events) thus holds a
// channel of 8 events instead of a full buffer: an idflow.Event is 120
// bytes, so 256 of them were 30 KiB per subscriber.
const chanBuffer = 8

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
	s := &subscription{ch: make(chan idflow.Event, min(chanBuffer, m.buffer)), bus: m, topic: topic, limit: m.buffer, done: make(chan struct{})}
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

// subscription delivers events in order through ch; up to limit events
// may wait (in ch, then in queue) before the subscriber is dropped.
type subscription struct {
	ch    chan idflow.Event
	bus   *Memory
	topic string
	limit int
	done  chan struct{} // closed by Close: a running pump stops

	mu       sync.Mutex
	queue    []idflow.Event // behind a full channel, oldest first
	pumping  bool           // a pump goroutine owns sending the queue
	pumpDone chan struct{}  // closed when the current pump returns
	closed   bool           // no more events are accepted
	dropped  bool
	chClosed bool
	stopped  bool // Close has run
}

func (s *subscription) Events() <-chan idflow.Event { return s.ch }

func (s *subscription) Dropped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// offer accepts e without blocking; false means limit events already wait.
func (s *subscription) offer(e idflow.Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return true
	}
	if !s.pumping {
		select {
		case s.ch <- e:
			return true
		default:
		}
	}
	if len(s.ch)+len(s.queue) >= s.limit {
		return false
	}
	s.queue = append(s.queue, e)
	if !s.pumping {
		s.pumping = true
		s.pumpDone = make(chan struct{})
		go s.pump(s.pumpDone)
	}
	return true
}

// pump moves the queue into the channel, in order, until the queue is empty
// or the subscription is closed. After a drop it delivers what was queued,
// then closes the channel.
func (s *subscription) pump(done chan struct{}) {
	defer close(done)
	for {
		s.mu.Lock()
		if s.stopped { // Close is waiting for this pump
			s.pumping = false
			s.mu.Unlock()
			return
		}
		if len(s.queue) == 0 {
			s.queue = nil
			s.pumping = false
			if s.dropped {
				s.closeChLocked()
			}
			s.mu.Unlock()
			return
		}
		e := s.queue[0]
		s.mu.Unlock()
		select {
		case s.ch <- e:
			s.mu.Lock()
			s.queue[0] = idflow.Event{}
			s.queue = s.queue[1:]
			s.mu.Unlock()
		case <-s.done:
			return
		}
	}
}

// drop stops accepting events; the subscriber still receives what was
// buffered, then its channel closes.
func (s *subscription) drop() {
	s.bus.remove(s) // first: once the channel closes, the bus no longer counts it
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed, s.dropped = true, true
	if !s.pumping {
		s.closeChLocked()
	} // else the pump closes it after the queue
}

func (s *subscription) closeChLocked() {
	if !s.chClosed {
		s.chClosed = true
		close(s.ch)
	}
}

// Close ends the subscription at once; events still queued are discarded.
func (s *subscription) Close() {
	s.bus.remove(s) // first: once the channel closes, the bus no longer counts it
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped, s.closed = true, true
	close(s.done)
	pumping, pumpDone := s.pumping, s.pumpDone
	s.mu.Unlock()
	if pumping {
		<-pumpDone // the pump never sends on a closed channel
	}
	s.mu.Lock()
	s.queue = nil
	s.closeChLocked()
	s.mu.Unlock()
}
