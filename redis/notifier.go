package redis

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"
)

// Notifier carries the identity lifecycle's announcements between
// replicas (lifecycle.Notifier) on one channel, <prefix>lifecycle. An
// announcement names nobody: it says what a replica reloads from the
// database, which is the record. Pub/sub delivers at most once; each
// replica also polls, so a lost announcement only delays a change.
type Notifier struct {
	rdb     *goredis.Client
	channel string
}

// NewNotifier returns the Notifier of c.
func NewNotifier(c *Client, opts ...Option) *Notifier {
	return &Notifier{rdb: c.rdb, channel: newConfig(opts).prefix + "lifecycle"}
}

// Publish sends msg to every replica.
func (n *Notifier) Publish(ctx context.Context, msg []byte) error {
	if err := n.rdb.Publish(ctx, n.channel, msg).Err(); err != nil {
		return fmt.Errorf("redis: publish: %w", err)
	}
	return nil
}

// Subscribe calls fn with every announcement until ctx ends. It returns
// once Redis confirmed the subscription; go-redis reconnects and
// re-subscribes by itself.
func (n *Notifier) Subscribe(ctx context.Context, fn func(msg []byte)) error {
	ps := n.rdb.Subscribe(ctx, n.channel)
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return fmt.Errorf("redis: subscribe: %w", err)
	}
	msgs := ps.Channel()
	go func() {
		defer ps.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				fn([]byte(m.Payload))
			}
		}
	}()
	return nil
}
