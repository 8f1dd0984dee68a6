// Package redis implements idflow's cache backend (idflow.CacheBackend) and
// its cross-replica run-event bus (idflow.EventBus) on Redis, through
// github.com/redis/go-redis/v9.
//
// Keys and channels carry a prefix (default "idflow:") so that several
// deployments can share one Redis. The cache never sees a Principal: it
// stores what cache.Scoped hands it, whose keys are derived from the
// Principal. The bus derives its channel only from the subscriber's
// Principal and the run id, and checks every event it receives against the
// channel it came on.
package redis

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// DefaultPrefix starts every key and channel unless WithPrefix says otherwise.
const DefaultPrefix = "idflow:"

// Client is a connection pool to one Redis server, shared by a Cache and a
// Bus.
type Client struct {
	rdb *goredis.Client
}

// Open connects to rawURL, redis://[user:pass@]host:port/db or rediss://…
// (TLS), and pings the server once. The URL's password never appears in an
// error.
func Open(ctx context.Context, rawURL string) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// A *url.Error repeats the whole URL, password included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("redis: invalid URL: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("redis: URL scheme %q: want redis:// or rediss://", u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("redis: URL %s has no host", u.Redacted())
	}
	opt, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis: URL %s: %w", u.Redacted(), err)
	}
	rdb := goredis.NewClient(opt)
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis: ping %s: %w", u.Redacted(), err)
	}
	return &Client{rdb: rdb}, nil
}

// Close closes the pool. Close the Bus built on c first.
func (c *Client) Close() error {
	if err := c.rdb.Close(); err != nil {
		return fmt.Errorf("redis: close: %w", err)
	}
	return nil
}

// Option configures a Cache or a Bus.
type Option func(*config)

type config struct {
	prefix           string
	buffer           int
	subscribeTimeout time.Duration
	opTimeout        time.Duration
}

func newConfig(opts []Option) config {
	c := config{prefix: DefaultPrefix, subscribeTimeout: 10 * time.Second, opTimeout: 5 * time.Second}
	for _, o := range opts {
		o(&c)
	}
	return c
}
