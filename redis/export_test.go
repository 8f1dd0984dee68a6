package redis

import "time"

// The options below exist for tests: one key space per test on a shared
// server, a small subscriber buffer, a short subscribe timeout. serve uses
// the defaults.

// WithPrefix starts every key (Cache) or channel (Bus) with prefix instead
// of DefaultPrefix. Every replica of one deployment must use the same one.
func WithPrefix(prefix string) Option { return func(c *config) { c.prefix = prefix } }

// WithBuffer sets how many events a Bus subscriber may fall behind before it
// is dropped (default events.DefaultBuffer).
func WithBuffer(n int) Option { return func(c *config) { c.buffer = n } }

// WithSubscribeTimeout bounds how long Bus.Subscribe waits for Redis to
// confirm a new channel subscription (default 10s).
func WithSubscribeTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.subscribeTimeout = d
		}
	}
}
