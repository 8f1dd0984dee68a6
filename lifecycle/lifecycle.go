// Package lifecycle keeps, on each replica, what the authentication layer
// asks on every request about a user's lifecycle: whether the user is
// disabled (auth.Revocations) and which groups a directory gave them
// (auth.Directory). The database is the record: the disabled set is loaded
// from it at start and reloaded when a replica announces a change (over
// Redis, when configured) and every poll interval (a lost announcement, or
// no Redis), so a deactivation reaches every replica within seconds.
//
// Reading is lock-free for the disabled set (a copy-on-write map behind an
// atomic pointer: changes are rare, reads are every request) and a sharded
// read lock for the directory groups (cached per user, loaded on a miss).
package lifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idflow/idflow"
)

// Source is where the lifecycle state is recorded: the store.
type Source interface {
	DisabledUsers(ctx context.Context) ([]idflow.UserRef, error)
	DirectoryGroupsOf(ctx context.Context, p idflow.Principal) ([]string, error)
}

// Notifier carries announcements between replicas (Redis pub/sub). An
// announcement only says what to reload; the database says what is true.
type Notifier interface {
	Publish(ctx context.Context, msg []byte) error
	// Subscribe calls fn with every message published by any replica (its
	// own included) until ctx ends; it returns once the subscription is
	// confirmed.
	Subscribe(ctx context.Context, fn func(msg []byte)) error
}

// Config of a Set.
type Config struct {
	Source   Source
	Notifier Notifier // nil: this replica learns of others' changes by polling only
	// Poll is how often the disabled set is reloaded from the database
	// (default 2 s without a Notifier, 30 s with one).
	Poll time.Duration
	// GroupsMaxAge is how long directory groups are cached (default 30 s):
	// a replica that missed an announcement reads them again after it.
	GroupsMaxAge time.Duration
	// GroupsCacheSize bounds the cached users (default 100,000).
	GroupsCacheSize int
	Log             *slog.Logger
}

// Set is the lifecycle state of one replica.
type Set struct {
	cfg      Config
	log      *slog.Logger
	disabled atomic.Pointer[map[string][]string] // user id → the tenants it is disabled in
	groups   *groupCache

	reloadMu sync.Mutex // one reload at a time, so hooks see each change once
	hooksMu  sync.Mutex
	hooks    []func(idflow.UserRef)

	stop context.CancelFunc
	done chan struct{}
}

// New returns a Set with nobody disabled; Start loads it.
func New(cfg Config) *Set {
	if cfg.Poll <= 0 {
		cfg.Poll = 2 * time.Second
		if cfg.Notifier != nil {
			cfg.Poll = 30 * time.Second
		}
	}
	if cfg.GroupsMaxAge <= 0 {
		cfg.GroupsMaxAge = 30 * time.Second
	}
	if cfg.GroupsCacheSize <= 0 {
		cfg.GroupsCacheSize = 100_000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Set{cfg: cfg, log: cfg.Log, groups: newGroupCache(cfg.GroupsCacheSize)}
	empty := map[string][]string{}
	s.disabled.Store(&empty)
	return s
}

// Disabled implements auth.Revocations.
func (s *Set) Disabled(tenantID, userID string) bool {
	m := *s.disabled.Load()
	if len(m) == 0 {
		return false
	}
	// Keyed by the user id alone: one string hashed, not two; the same
	// user id disabled in several tenants is rare.
	return slices.Contains(m[userID], tenantID)
}

// DirectoryGroups implements auth.Directory: the cached groups of p's
// user, or the store's on a miss. A store error answers none (logged),
// not cached.
func (s *Set) DirectoryGroups(ctx context.Context, p idflow.Principal) []string {
	ref := idflow.UserRef{TenantID: p.TenantID, UserID: p.UserID}
	if g, ok := s.groups.get(ref); ok {
		return g
	}
	gen := s.groups.generation()
	g, err := s.cfg.Source.DirectoryGroupsOf(ctx, p)
	if err != nil {
		s.log.WarnContext(ctx, "directory groups unreadable; counting the token's only", "err", err)
		return nil
	}
	s.groups.put(ref, g, gen)
	return g
}

// OnDisable registers fn, called on this replica for each user found
// newly disabled (by this replica's change, an announcement or a poll):
// it closes what is open here (WebSockets, MCP sessions).
func (s *Set) OnDisable(fn func(idflow.UserRef)) {
	s.hooksMu.Lock()
	defer s.hooksMu.Unlock()
	s.hooks = append(s.hooks, fn)
}

// Start loads the disabled set (an error fails the start: without it,
// idflow would admit disabled users), subscribes to announcements and
// polls until Close.
func (s *Set) Start(ctx context.Context) error {
	if err := s.reload(ctx); err != nil {
		return fmt.Errorf("lifecycle: loading the disabled users: %w", err)
	}
	ctx, s.stop = context.WithCancel(context.WithoutCancel(ctx))
	s.done = make(chan struct{})
	if s.cfg.Notifier != nil {
		if err := s.cfg.Notifier.Subscribe(ctx, s.receive); err != nil {
			s.stop()
			return fmt.Errorf("lifecycle: subscribing to announcements: %w", err)
		}
	}
	go s.poll(ctx)
	return nil
}

// Close stops polling and listening.
func (s *Set) Close() error {
	if s.stop != nil {
		s.stop()
		<-s.done
	}
	return nil
}

func (s *Set) poll(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	flushed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := s.reload(ctx); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "reloading the disabled users failed; keeping the last set", "err", err)
			}
			if now.Sub(flushed) >= s.cfg.GroupsMaxAge {
				s.groups.flush()
				flushed = now
			}
		}
	}
}

// announcement is what replicas tell each other: reload the disabled set
// (State), forget the cached directory groups (Groups). It names nobody:
// the database says who.
type announcement struct {
	State  bool `json:"state,omitempty"`
	Groups bool `json:"groups,omitempty"`
}

func (s *Set) receive(msg []byte) {
	var a announcement
	if err := json.Unmarshal(msg, &a); err != nil {
		s.log.Warn("lifecycle announcement unreadable", "err", err)
		return
	}
	s.apply(context.Background(), a)
}

func (s *Set) apply(ctx context.Context, a announcement) {
	if a.Groups {
		s.groups.flush()
	}
	if a.State {
		if err := s.reload(ctx); err != nil {
			s.log.WarnContext(ctx, "reloading the disabled users failed; the next poll retries", "err", err)
		}
	}
}

// StateChanged is called after this replica recorded a user's disable or
// enable: it applies here at once (before it returns, the user is refused
// on this replica) and is announced to the others.
func (s *Set) StateChanged(ctx context.Context) error {
	return s.announce(ctx, announcement{State: true})
}

// GroupsChanged is called after this replica changed directory groups or
// memberships. Every replica forgets every cached group: changes come in
// bursts while a directory provisions, and are rare after.
func (s *Set) GroupsChanged(ctx context.Context) error {
	return s.announce(ctx, announcement{Groups: true})
}

func (s *Set) announce(ctx context.Context, a announcement) error {
	s.apply(ctx, a)
	if s.cfg.Notifier == nil {
		return nil
	}
	msg, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if err := s.cfg.Notifier.Publish(ctx, msg); err != nil {
		// The change is recorded; the other replicas' polls find it.
		s.log.WarnContext(ctx, "announcing a lifecycle change failed; other replicas learn it by polling", "err", err)
	}
	return nil
}

// reload reads the disabled set, swaps it in, and runs the hooks for the
// users disabled since the last reload.
func (s *Set) reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	refs, err := s.cfg.Source.DisabledUsers(ctx)
	if err != nil {
		return err
	}
	next := make(map[string][]string, len(refs))
	for _, r := range refs {
		next[r.UserID] = append(next[r.UserID], r.TenantID)
	}
	prev := *s.disabled.Load()
	s.disabled.Store(&next)
	var fresh []idflow.UserRef
	for _, r := range refs {
		if !slices.Contains(prev[r.UserID], r.TenantID) {
			fresh = append(fresh, r)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	s.hooksMu.Lock()
	hooks := append([]func(idflow.UserRef){}, s.hooks...)
	s.hooksMu.Unlock()
	for _, r := range fresh {
		for _, h := range hooks {
			h(r)
		}
	}
	return nil
}

// groupCache is the directory groups of recently seen users. A flush
// moves the generation on rather than clearing every shard, and an entry
// loaded while a flush happened is not kept (it may predate the change).
type groupCache struct {
	gen      atomic.Uint64
	shards   [16]groupShard
	perShard int
}

type groupShard struct {
	mu sync.RWMutex
	m  map[string]groupEntry // by user id: one string hashed
}

type groupEntry struct {
	tenant string
	groups []string
	gen    uint64
}

func newGroupCache(size int) *groupCache {
	c := &groupCache{perShard: max(1, size/16)}
	for i := range c.shards {
		c.shards[i].m = map[string]groupEntry{}
	}
	return c
}

func (c *groupCache) shard(ref idflow.UserRef) *groupShard {
	// The last byte of the user id: ids (GUIDs, subs) end in varied
	// characters, and hashing the whole id here cost more than the lookup.
	if n := len(ref.UserID); n > 0 {
		return &c.shards[ref.UserID[n-1]%16]
	}
	return &c.shards[0]
}

func (c *groupCache) generation() uint64 { return c.gen.Load() }

func (c *groupCache) get(ref idflow.UserRef) ([]string, bool) {
	s := c.shard(ref)
	s.mu.RLock()
	e, ok := s.m[ref.UserID]
	s.mu.RUnlock()
	if !ok || e.tenant != ref.TenantID || e.gen != c.gen.Load() {
		return nil, false
	}
	return e.groups, true
}

func (c *groupCache) put(ref idflow.UserRef, groups []string, gen uint64) {
	if gen != c.gen.Load() {
		return // flushed while loading: what was read may be stale
	}
	s := c.shard(ref)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[ref.UserID]; !ok && len(s.m) >= c.perShard {
		for k, e := range s.m { // stale entries first, then any (map order is random)
			if e.gen != gen || len(s.m) >= c.perShard {
				delete(s.m, k)
			}
			if len(s.m) < c.perShard-c.perShard/8 {
				break
			}
		}
	}
	s.m[ref.UserID] = groupEntry{tenant: ref.TenantID, groups: groups, gen: gen}
}

func (c *groupCache) flush() { c.gen.Add(1) }
