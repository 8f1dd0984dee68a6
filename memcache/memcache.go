// Package memcache implements idflow.CacheBackend on memcached, through
// github.com/bradfitz/gomemcache.
//
// memcached keys are at most 250 bytes of printable ASCII without spaces,
// and cache.Scoped's keys are neither bounded nor restricted. Every key is
// therefore mapped to prefix + base64url(key) when that fits, else to
// prefix + "h:" + hex(SHA-256(key)). The two forms cannot meet (':' is not
// a base64url character), the first is a bijection, and the second keeps
// the whole digest, never a truncation.
package memcache

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/idflow/idflow"
)

// DefaultPrefix starts every key unless WithPrefix says otherwise.
const DefaultPrefix = "idflow:"

// maxKeyLen is memcached's key limit.
const maxKeyLen = 250

// maxRelative is the longest expiration, in seconds, that memcached takes
// as relative; anything longer is read as a Unix time.
const maxRelative = 30 * 24 * 60 * 60

// Cache is an idflow.CacheBackend on one or more memcached servers.
type Cache struct {
	mc     *memcache.Client
	prefix string
	now    func() time.Time
}

var _ idflow.CacheBackend = (*Cache)(nil)

// Option configures a Cache.
type Option func(*Cache) error

// Open connects to memcached://host:port[,host:port…] and checks that every
// server answers.
func Open(rawURL string, opts ...Option) (*Cache, error) {
	servers, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	var ss memcache.ServerList
	if err := ss.SetServers(servers...); err != nil {
		return nil, fmt.Errorf("memcache: servers %v: %w", servers, err)
	}
	c := &Cache{mc: memcache.NewFromSelector(&ss), prefix: DefaultPrefix, now: time.Now}
	c.mc.MaxIdleConns = 16
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if err := c.mc.Ping(); err != nil {
		_ = c.mc.Close()
		return nil, fmt.Errorf("memcache: ping %v: %w", servers, err)
	}
	return c, nil
}

func parseURL(rawURL string) ([]string, error) {
	rest, ok := strings.CutPrefix(rawURL, "memcached://")
	if !ok {
		return nil, fmt.Errorf("memcache: URL %q: want memcached://host:port[,host:port]", rawURL)
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return nil, errors.New("memcache: URL names no server")
	}
	var servers []string
	for hp := range strings.SplitSeq(rest, ",") {
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			return nil, fmt.Errorf("memcache: server %q: %w", hp, err)
		}
		if host == "" || port == "" || strings.ContainsAny(hp, "/?#@") {
			return nil, fmt.Errorf("memcache: server %q: want host:port", hp)
		}
		servers = append(servers, hp)
	}
	return servers, nil
}

// Close closes idle connections.
func (c *Cache) Close() error {
	if err := c.mc.Close(); err != nil {
		return fmt.Errorf("memcache: close: %w", err)
	}
	return nil
}

// Key is the memcached key of key.
func (c *Cache) Key(key string) string {
	if n := len(c.prefix) + base64.RawURLEncoding.EncodedLen(len(key)); n <= maxKeyLen {
		return c.prefix + base64.RawURLEncoding.EncodeToString([]byte(key))
	}
	sum := sha256.Sum256([]byte(key))
	return c.prefix + "h:" + hex.EncodeToString(sum[:])
}

// Get returns the value of key; a miss is (nil, false, nil). memcached's
// client takes no context: ctx is checked before the call only.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("memcache: get: %w", err)
	}
	it, err := c.mc.Get(c.Key(key))
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("memcache: get: %w", err)
	}
	if it.Value == nil {
		return []byte{}, true, nil
	}
	return it.Value, true, nil
}

// Set stores value under key for ttl, in whole seconds rounded up (at
// least one). A ttl that is not positive stores nothing and removes any
// older value, as an entry that has already expired would.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return c.Delete(ctx, key)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcache: set: %w", err)
	}
	it := &memcache.Item{Key: c.Key(key), Value: value, Expiration: expiration(ttl, c.now())}
	if err := c.mc.Set(it); err != nil {
		return fmt.Errorf("memcache: set: %w", err)
	}
	return nil
}

// Delete removes key; deleting a missing key is not an error.
func (c *Cache) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcache: delete: %w", err)
	}
	if err := c.mc.Delete(c.Key(key)); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return fmt.Errorf("memcache: delete: %w", err)
	}
	return nil
}

// expiration is memcached's expiration field for ttl (> 0): seconds rounded
// up, at least 1; past 30 days memcached wants an absolute Unix time.
func expiration(ttl time.Duration, now time.Time) int32 {
	secs := int64(ttl / time.Second)
	if ttl%time.Second != 0 || secs < 1 {
		secs++
	}
	if secs > maxRelative {
		abs := now.Unix() + secs
		if abs > 1<<31-1 {
			abs = 1<<31 - 1
		}
		return int32(abs)
	}
	return int32(secs)
}
