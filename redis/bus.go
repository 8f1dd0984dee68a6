package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/events"
)

// ErrBusClosed is returned by a Bus after Close.
var ErrBusClosed = errors.New("redis bus: closed")

// Bus is an idflow.EventBus across replicas. Publish sends a run's event to
// the Redis channel <prefix>run:<events.Topic(user, run)>; every replica
// holds ONE Redis subscription (one connection, one *goredis.PubSub) and
// subscribes it to a channel while at least one local subscriber watches
// that run, so any number of WebSockets of one run on one replica share
// one Redis subscription. Messages are routed by channel name to a local
// events.Memory, which hands them to subscribers without ever blocking:
// a subscriber that falls behind by more than its buffer is dropped.
//
// Subscribe returns once Redis has confirmed the channel subscription, so
// an event published after Subscribe returns is delivered — a WebSocket
// may subscribe, replay the stored events, then stream the live ones
// (deduplicating by seq) without a gap.
//
// Redis Pub/Sub delivers at most once: events published while the
// subscription connection is down are lost. go-redis reconnects and
// re-subscribes every channel by itself; when the Bus sees Redis confirm a
// channel it had not asked for (the re-subscription), it drops that
// channel's local subscribers (Dropped reports true), exactly like slow
// ones, so that they resynchronise from the run store instead of waiting
// for an event that will never come. Subscribers that arrive afterwards
// are served by the restored subscription.
type Bus struct {
	rdb        *goredis.Client
	log        *slog.Logger
	chanPrefix string // <prefix>run:
	mem        *events.Memory
	ps         *goredis.PubSub
	cfg        config
	done       chan struct{} // closed when the receive loop has ended

	// cmdMu orders SUBSCRIBE and UNSUBSCRIBE commands with the changes of
	// the topic table they follow; mu guards the table.
	cmdMu   sync.Mutex
	mu      sync.Mutex
	topics  map[string]*topic // by Redis channel
	pending map[string]int    // SUBSCRIBE commands not yet confirmed, by channel
	closed  bool
}

var _ idflow.EventBus = (*Bus)(nil)

// topic is one Redis channel this replica is subscribed to, with its local
// subscribers (its reference count).
type topic struct {
	channel string // <prefix>run:<name>
	name    string // events.Topic(user, run)
	subs    map[*subscription]struct{}

	// ready is closed once Redis has confirmed the subscription
	// (confirmed) or it failed (err set before the close).
	ready     chan struct{}
	confirmed bool
	err       error
}

// NewBus starts the replica's Redis subscription on c. logger receives the
// events the bus drops (malformed, or not matching their channel) and
// reconnections; nil discards them. Options: WithPrefix, WithBuffer,
// WithSubscribeTimeout. Close the Bus before c.
func NewBus(c *Client, logger *slog.Logger, opts ...Option) *Bus {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg := newConfig(opts)
	b := &Bus{
		rdb:        c.rdb,
		log:        logger,
		chanPrefix: cfg.prefix + "run:",
		mem:        events.NewMemory(cfg.buffer),
		ps:         c.rdb.Subscribe(context.Background()), // no channel yet
		cfg:        cfg,
		done:       make(chan struct{}),
		topics:     map[string]*topic{},
		pending:    map[string]int{},
	}
	// With subscriptions, so that confirmations are seen. The receive loop
	// never blocks (events.Memory drops slow subscribers), so this buffer
	// only absorbs scheduling hiccups.
	msgs := b.ps.ChannelWithSubscriptions(goredis.WithChannelSize(1024))
	go b.receive(msgs)
	return b
}

// Channel is the Redis channel of a user's run (tests, operators).
func (b *Bus) Channel(userID, runID string) string {
	return b.chanPrefix + events.Topic(userID, runID)
}

// Publish sends e to every replica's subscribers of its owner's run.
func (b *Bus) Publish(ctx context.Context, e idflow.Event) error {
	if e.UserID == "" || e.RunID == "" {
		return idflow.Errorf(idflow.EINVALID, "an event needs its run id and owner")
	}
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("redis bus: encode event: %w", err)
	}
	if err := b.rdb.Publish(ctx, b.Channel(e.UserID, e.RunID), data).Err(); err != nil {
		return fmt.Errorf("redis bus: publish: %w", err)
	}
	return nil
}

// Subscribe delivers p's events of runID until ctx ends or the subscription
// is closed. The channel is derived from p.Owner() and runID only: an
// app-only or zero Principal is refused with Owner's error.
func (b *Bus) Subscribe(ctx context.Context, p idflow.Principal, runID string) (idflow.Subscription, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redis bus: subscribe: %w", err)
	}
	name := events.Topic(owner, runID)
	channel := b.chanPrefix + name

	b.cmdMu.Lock()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.cmdMu.Unlock()
		return nil, ErrBusClosed
	}
	t := b.topics[channel]
	first := t == nil
	if first {
		t = &topic{channel: channel, name: name, subs: map[*subscription]struct{}{}, ready: make(chan struct{})}
		b.topics[channel] = t
		b.pending[channel]++
	}
	s := &subscription{bus: b, topic: t, inner: b.mem.SubscribeTopic(context.Background(), name)}
	t.subs[s] = struct{}{}
	b.mu.Unlock()
	if first {
		if err := b.ps.Subscribe(ctx, channel); err != nil {
			b.failTopicLocked(t, fmt.Errorf("redis bus: subscribe: %w", err))
		}
	}
	b.cmdMu.Unlock()

	s.setStop(context.AfterFunc(ctx, s.Close))
	if err := b.wait(ctx, t); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// wait returns once t's subscription is confirmed, or why it is not.
func (b *Bus) wait(ctx context.Context, t *topic) error {
	timer := time.NewTimer(b.cfg.subscribeTimeout)
	defer timer.Stop()
	select {
	case <-t.ready:
		return t.err
	case <-ctx.Done():
		return fmt.Errorf("redis bus: subscribe: %w", context.Cause(ctx))
	case <-b.done:
		return ErrBusClosed
	case <-timer.C:
		err := fmt.Errorf("redis bus: subscription to %s not confirmed within %s", t.channel, b.cfg.subscribeTimeout)
		b.cmdMu.Lock()
		b.failTopicLocked(t, err)
		b.cmdMu.Unlock()
		select {
		case <-t.ready: // confirmed meanwhile, or failed by us
			return t.err
		default: // t was released meanwhile
			return err
		}
	}
}

// failTopicLocked gives up t unless it was confirmed meanwhile: its waiters
// get err, and the next subscriber of the channel starts afresh. Holds
// cmdMu.
func (b *Bus) failTopicLocked(t *topic, err error) {
	b.mu.Lock()
	if b.topics[t.channel] != t || t.confirmed || t.err != nil {
		b.mu.Unlock()
		return
	}
	delete(b.topics, t.channel)
	delete(b.pending, t.channel)
	t.err = err
	close(t.ready)
	closed := b.closed
	b.mu.Unlock()
	if !closed {
		// go-redis remembers the channel even when the command failed;
		// make it forget it.
		b.unsubscribe(t.channel)
	}
}

// release removes s from its topic and unsubscribes the channel when s was
// its last local subscriber.
func (b *Bus) release(s *subscription) {
	b.cmdMu.Lock()
	defer b.cmdMu.Unlock()
	b.mu.Lock()
	t := s.topic
	delete(t.subs, s)
	last := len(t.subs) == 0 && b.topics[t.channel] == t
	if last {
		delete(b.topics, t.channel)
	}
	closed := b.closed
	b.mu.Unlock()
	if last && !closed {
		b.unsubscribe(t.channel)
	}
}

func (b *Bus) unsubscribe(channel string) {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.opTimeout)
	defer cancel()
	if err := b.ps.Unsubscribe(ctx, channel); err != nil {
		// go-redis has forgotten the channel: a reconnection will not
		// subscribe it again.
		b.log.Warn("redis bus: unsubscribe failed", "channel", channel, "err", err)
	}
}

// receive routes what the replica's subscription receives until it closes.
func (b *Bus) receive(msgs <-chan any) {
	defer close(b.done)
	for m := range msgs {
		switch m := m.(type) {
		case *goredis.Message:
			b.route(m)
		case *goredis.Subscription:
			if m.Kind == "subscribe" {
				b.confirm(m.Channel)
			}
		}
	}
}

// route hands a message to the local subscribers of its channel, after
// checking that the event belongs to that channel.
func (b *Bus) route(m *goredis.Message) {
	name, ok := strings.CutPrefix(m.Channel, b.chanPrefix)
	if !ok {
		b.log.Warn("redis bus: message on a foreign channel dropped", "channel", m.Channel)
		return
	}
	var e idflow.Event
	if err := json.Unmarshal([]byte(m.Payload), &e); err != nil {
		b.log.Warn("redis bus: undecodable event dropped", "channel", m.Channel, "err", err)
		return
	}
	if events.Topic(e.UserID, e.RunID) != name {
		// Somebody published on the channel of one user's run an event of
		// another run or owner: never deliver it.
		b.log.Warn("redis bus: event does not match its channel, dropped",
			"channel", m.Channel, "event_user_id", e.UserID, "event_run_id", e.RunID)
		return
	}
	b.mem.Deliver(name, e)
}

// confirm records Redis's confirmation of a SUBSCRIBE to channel.
func (b *Bus) confirm(channel string) {
	b.mu.Lock()
	t := b.topics[channel]
	var stale []*subscription
	if n := b.pending[channel]; n > 0 {
		if n--; n == 0 {
			delete(b.pending, channel)
			if t != nil && !t.confirmed && t.err == nil {
				t.confirmed = true
				close(t.ready)
			}
		} else {
			b.pending[channel] = n
		}
	} else if t != nil && t.confirmed {
		// Nobody asked: go-redis re-subscribed after a reconnection, and
		// whatever was published meanwhile is lost.
		for s := range t.subs {
			stale = append(stale, s)
		}
	}
	b.mu.Unlock()
	if len(stale) > 0 {
		b.log.Info("redis bus: re-subscribed after a reconnection; dropping local subscribers to resync",
			"channel", channel, "subscribers", len(stale))
		// Not on the receive loop: release writes to Redis.
		go func() {
			for _, s := range stale {
				s.drop()
			}
		}()
	}
}

// Close ends the replica's subscription; live subscribers are dropped.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	var subs []*subscription
	for _, t := range b.topics {
		for s := range t.subs {
			subs = append(subs, s)
		}
	}
	b.mu.Unlock()
	err := b.ps.Close()
	<-b.done
	for _, s := range subs {
		s.drop()
	}
	if err != nil {
		return fmt.Errorf("redis bus: close: %w", err)
	}
	return nil
}

// subscription is one local subscriber: its events come from the bus's
// events.Memory; closing it releases its share of the Redis subscription.
type subscription struct {
	bus   *Bus
	topic *topic
	inner idflow.Subscription
	gap   atomic.Bool // dropped because events may have been lost

	mu   sync.Mutex
	stop func() bool // ends the context.AfterFunc
	once sync.Once
}

func (s *subscription) Events() <-chan idflow.Event { return s.inner.Events() }

func (s *subscription) Dropped() bool { return s.gap.Load() || s.inner.Dropped() }

func (s *subscription) Close() {
	s.once.Do(func() {
		s.mu.Lock()
		stop := s.stop
		s.mu.Unlock()
		if stop != nil {
			stop()
		}
		s.inner.Close()
		s.bus.release(s)
	})
}

func (s *subscription) setStop(stop func() bool) {
	s.mu.Lock()
	s.stop = stop
	s.mu.Unlock()
}

// drop closes s and marks it dropped.
func (s *subscription) drop() {
	s.gap.Store(true)
	s.Close()
}
