package redis

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/cache"
	"github.com/idflow/idflow/cache/cachetest"
	"github.com/idflow/idflow/events"
	"github.com/idflow/idflow/internal/testsvc"
)

// wait bounds every wait for something asynchronous to happen.
const wait = 10 * time.Second

func open(t testing.TB, addr string) *Client {
	t.Helper()
	c, err := Open(context.Background(), "redis://"+addr+"/0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newBus(t testing.TB, c *Client, logger *slog.Logger, opts ...Option) *Bus {
	t.Helper()
	b := NewBus(c, logger, opts...)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", wait, what)
		}
		<-tick.C
	}
}

// recv returns the next event of sub, failing after the deadline.
func recv(t testing.TB, sub idflow.Subscription) idflow.Event {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case e, ok := <-sub.Events():
		if !ok {
			t.Fatalf("subscription closed (dropped=%v)", sub.Dropped())
		}
		return e
	case <-timer.C:
		t.Fatalf("no event within %s", wait)
	}
	return idflow.Event{}
}

func wantNothing(t testing.TB, sub idflow.Subscription, who string) {
	t.Helper()
	select {
	case e, ok := <-sub.Events():
		if ok {
			t.Fatalf("%s received %+v", who, e)
		}
		t.Fatalf("%s's subscription closed", who)
	default:
	}
}

func numsub(t testing.TB, c *Client, channel string) int64 {
	t.Helper()
	m, err := c.rdb.PubSubNumSub(context.Background(), channel).Result()
	if err != nil {
		t.Fatal(err)
	}
	return m[channel]
}

func ev(user, run string, seq int64) idflow.Event {
	return idflow.Event{
		RunID: run, UserID: user, Seq: seq, Type: idflow.EventStepOutput, StepID: "s1",
		Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, seq)), At: time.Now().UTC().Truncate(time.Microsecond),
	}
}

var (
	alice = authtest.User("alice", "t-one")
	bob   = authtest.User("bob", "t-one")
)

func TestOpen(t *testing.T) {
	addr := testsvc.StartRedis(t)
	ctx := context.Background()
	for _, u := range []string{
		"", "memory://", "http://" + addr, "redis://", "redis://" + addr + "/notanumber",
		"unix:///tmp/redis.sock",
	} {
		if c, err := Open(ctx, u); err == nil {
			_ = c.Close()
			t.Errorf("Open(%q) succeeded", u)
		}
	}
	// The password never appears in an error, whether the URL is malformed
	// or the server refuses it.
	for _, u := range []string{
		"redis://user:s3cret-pw@" + addr + "/0",
		"redis://user:s3cret-pw@127.0.0.1:1/0",
		"redis://user:s3cret-pw@" + addr + "/x",
		"redis://user:s3cret-pw@" + addr + "/0%zz",
	} {
		c, err := Open(ctx, u)
		if err == nil {
			_ = c.Close()
			t.Fatalf("Open(%q) succeeded", u)
		}
		if strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
	// The database number is honoured.
	c3, err := Open(ctx, "redis://"+addr+"/3")
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := NewCache(c3).Set(ctx, "k", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if n, err := c3.rdb.Do(ctx, "SELECT", 3).Result(); err != nil || n != "OK" {
		t.Fatal(n, err)
	}
	c0 := open(t, addr)
	if n := c0.rdb.Exists(ctx, DefaultPrefix+"k").Val(); n != 0 {
		t.Fatal("a key written to db 3 is in db 0")
	}
}

func TestCacheConformance(t *testing.T) {
	c := open(t, testsvc.StartRedis(t))
	cachetest.Run(t, func(t testing.TB) idflow.CacheBackend {
		return NewCache(c, WithPrefix(t.Name()+":")) // one key space per subtest
	}, cachetest.Principals{Alice: alice, Bob: bob, App: authtest.App("svc")})
}

func TestCacheExpiry(t *testing.T) {
	c := open(t, testsvc.StartRedis(t))
	ctx := context.Background()
	cc := NewCache(c)
	if err := cc.Set(ctx, "short", []byte("v"), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// The ttl reached Redis in milliseconds.
	pttl, err := c.rdb.PTTL(ctx, DefaultPrefix+"short").Result()
	if err != nil || pttl <= 0 || pttl > 300*time.Millisecond {
		t.Fatalf("PTTL = %v, %v; want (0, 300ms]", pttl, err)
	}
	// A sub-millisecond ttl is rounded up, not down to "no expiry".
	if err := cc.Set(ctx, "tiny", []byte("v"), time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if p := c.rdb.PTTL(ctx, DefaultPrefix+"tiny").Val(); p == -1 {
		t.Fatal("a 1µs ttl was stored without expiry")
	}
	eventually(t, "the 300ms entry to expire", func() bool {
		_, ok, err := cc.Get(ctx, "short")
		if err != nil {
			t.Fatal(err)
		}
		return !ok
	})
}

func TestCachePrefixSeparatesDeployments(t *testing.T) {
	c := open(t, testsvc.StartRedis(t))
	ctx := context.Background()
	one, two := NewCache(c, WithPrefix("one:")), NewCache(c, WithPrefix("two:"))
	if err := one.Set(ctx, "k", []byte("one's"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := two.Get(ctx, "k"); err != nil || ok {
		t.Fatalf("deployment two sees one's key: (%v, %v)", ok, err)
	}
	if v := c.rdb.Get(ctx, "one:k").Val(); v != "one's" {
		t.Fatalf("raw key one:k = %q", v)
	}
}

func TestScopedKeepsUsersApart(t *testing.T) {
	c := open(t, testsvc.StartRedis(t))
	ctx := context.Background()
	s := cache.NewScoped(NewCache(c), time.Hour)
	if err := s.Set(ctx, alice, "facts", "f1", []byte("alice only")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get(ctx, bob, "facts", "f1"); err != nil || ok {
		t.Fatalf("bob sees alice's entry: (%q, %v, %v)", v, ok, err)
	}
	if v, ok, err := s.Get(ctx, alice, "facts", "f1"); err != nil || !ok || string(v) != "alice only" {
		t.Fatalf("alice's entry = (%q, %v, %v)", v, ok, err)
	}
	keys, err := c.rdb.Keys(ctx, "*").Result()
	if err != nil || len(keys) != 1 || keys[0] != DefaultPrefix+"u:alice:facts:f1" {
		t.Fatalf("Redis holds %q, %v; want only alice's scoped key", keys, err)
	}
}

// An event published on one replica reaches a subscriber on another, and
// Subscribe returning means the subscription is live: publishing right
// after it, with no wait, is never lost.
func TestBusAcrossReplicas(t *testing.T) {
	addr := testsvc.StartRedis(t)
	a := newBus(t, open(t, addr), nil)
	b := newBus(t, open(t, addr), nil)
	ctx := context.Background()
	for i := range 20 {
		run := fmt.Sprintf("run_%d", i)
		sub, err := b.Subscribe(ctx, alice, run)
		if err != nil {
			t.Fatal(err)
		}
		want := ev("alice", run, 1)
		if err := a.Publish(ctx, want); err != nil {
			t.Fatal(err)
		}
		got := recv(t, sub)
		if got.RunID != want.RunID || got.UserID != want.UserID || got.Seq != want.Seq || got.Type != want.Type ||
			got.StepID != want.StepID || string(got.Data) != string(want.Data) || !got.At.Equal(want.At) {
			t.Fatalf("got %+v, want %+v", got, want)
		}
		sub.Close()
	}
}

func TestBusKeepsOwnersApart(t *testing.T) {
	addr := testsvc.StartRedis(t)
	a := newBus(t, open(t, addr), nil)
	b := newBus(t, open(t, addr), nil)
	ctx := context.Background()
	aSub, err := b.Subscribe(ctx, alice, "run_1")
	if err != nil {
		t.Fatal(err)
	}
	defer aSub.Close()
	bSub, err := b.Subscribe(ctx, bob, "run_1") // the same run id
	if err != nil {
		t.Fatal(err)
	}
	defer bSub.Close()
	// bob's event first: one publisher, one subscriber connection, so it
	// is routed before alice's.
	if err := a.Publish(ctx, ev("bob", "run_1", 1)); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx, ev("alice", "run_1", 2)); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, aSub); got.UserID != "alice" || got.Seq != 2 {
		t.Fatalf("alice received %+v", got)
	}
	wantNothing(t, aSub, "alice")
	if got := recv(t, bSub); got.UserID != "bob" || got.Seq != 1 {
		t.Fatalf("bob received %+v", got)
	}
	wantNothing(t, bSub, "bob")
	if err := a.Publish(ctx, idflow.Event{RunID: "run_1", Seq: 3}); idflow.ErrorCode(err) != idflow.EINVALID {
		t.Fatalf("event without an owner: err = %v, want invalid", err)
	}
}

func TestBusRefusesPrincipalsWithoutAUser(t *testing.T) {
	c := open(t, testsvc.StartRedis(t))
	b := newBus(t, c, nil)
	for _, p := range []idflow.Principal{
		authtest.App("svc"), authtest.Malformed("", ""), authtest.Malformed("alice", ""), authtest.Malformed("", idflow.KindUser),
	} {
		sub, err := b.Subscribe(context.Background(), p, "run_1")
		if idflow.ErrorCode(err) != idflow.EFORBIDDEN || sub != nil {
			t.Errorf("Subscribe(%+v) = (%v, %v), want forbidden", p, sub, err)
		}
	}
	if n := numsub(t, c, b.Channel("svc", "run_1")); n != 0 {
		t.Fatalf("an app principal left %d Redis subscriptions", n)
	}
}

// Many local subscribers of one run share one Redis subscription, which
// ends with the last of them.
func TestBusSharesOneRedisSubscriptionPerRun(t *testing.T) {
	addr := testsvc.StartRedis(t)
	c := open(t, addr)
	b := newBus(t, c, nil)
	pub := newBus(t, open(t, addr), nil)
	ctx := context.Background()
	channel := b.Channel("alice", "run_1")
	var subs []idflow.Subscription
	for range 3 {
		s, err := b.Subscribe(ctx, alice, "run_1")
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	if n := numsub(t, c, channel); n != 1 {
		t.Fatalf("NUMSUB = %d with 3 local subscribers, want 1", n)
	}
	subs[0].Close()
	subs[1].Close()
	subs[1].Close() // twice is harmless
	// The remaining subscriber still receives: the shared subscription
	// outlived the two that left.
	if err := pub.Publish(ctx, ev("alice", "run_1", 1)); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, subs[2]); got.Seq != 1 {
		t.Fatalf("got %+v", got)
	}
	if n := numsub(t, c, channel); n != 1 {
		t.Fatalf("NUMSUB = %d with 1 local subscriber, want 1", n)
	}
	subs[2].Close()
	eventually(t, "NUMSUB to reach 0 after the last subscriber left", func() bool { return numsub(t, c, channel) == 0 })
	if n := b.mem.Subscribers(events.Topic("alice", "run_1")); n != 0 {
		t.Fatalf("%d local subscribers left", n)
	}

	// A subscription also ends with its context.
	cctx, cancel := context.WithCancel(ctx)
	s, err := b.Subscribe(cctx, alice, "run_2")
	if err != nil {
		t.Fatal(err)
	}
	if n := numsub(t, c, b.Channel("alice", "run_2")); n != 1 {
		t.Fatalf("NUMSUB(run_2) = %d, want 1", n)
	}
	cancel()
	for range s.Events() {
	}
	eventually(t, "NUMSUB(run_2) to reach 0 after cancel", func() bool { return numsub(t, c, b.Channel("alice", "run_2")) == 0 })
	b.mu.Lock()
	left := len(b.topics)
	b.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d topics left in the table", left)
	}
}

func TestBusDropsSlowSubscriberOnly(t *testing.T) {
	addr := testsvc.StartRedis(t)
	b := newBus(t, open(t, addr), nil, WithBuffer(2))
	pub := newBus(t, open(t, addr), nil)
	ctx := context.Background()
	slow, err := b.Subscribe(ctx, alice, "run_1")
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, err := b.Subscribe(ctx, alice, "run_1")
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	for i := int64(1); i <= 6; i++ {
		if err := pub.Publish(ctx, ev("alice", "run_1", i)); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, fast); got.Seq != i { // the fast one keeps up
			t.Fatalf("fast got seq %d, want %d", got.Seq, i)
		}
	}
	// Events are routed one at a time: once the fast subscriber has the
	// third, the slow one's full buffer has been seen.
	if !slow.Dropped() {
		t.Fatal("slow subscriber not dropped")
	}
	if fast.Dropped() {
		t.Fatal("fast subscriber dropped")
	}
	var kept []int64
	for e := range slow.Events() {
		kept = append(kept, e.Seq)
	}
	if len(kept) != 2 || kept[0] != 1 || kept[1] != 2 {
		t.Fatalf("slow subscriber kept %v, want its buffer [1 2]", kept)
	}
}

// An event whose owner or run does not match the channel it arrived on is
// dropped and logged, as is one that does not decode.
func TestBusDropsEventsNotMatchingTheirChannel(t *testing.T) {
	c := open(t, testsvc.StartRedis(t))
	var logs syncBuffer
	b := newBus(t, c, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx := context.Background()
	sub, err := b.Subscribe(ctx, alice, "run_1")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	channel := b.Channel("alice", "run_1")
	for _, forged := range []idflow.Event{ev("bob", "run_1", 1), ev("alice", "run_2", 2), ev("", "", 3)} {
		data, _ := json.Marshal(forged)
		if err := c.rdb.Publish(ctx, channel, data).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.rdb.Publish(ctx, channel, "{not json").Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, ev("alice", "run_1", 4)); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, sub); got.Seq != 4 || got.UserID != "alice" || got.RunID != "run_1" {
		t.Fatalf("alice received %+v, want only her own seq 4", got)
	}
	out := logs.String()
	if n := strings.Count(out, "does not match its channel"); n != 3 {
		t.Errorf("logged %d mismatches, want 3:\n%s", n, out)
	}
	if !strings.Contains(out, "undecodable event") {
		t.Errorf("undecodable event not logged:\n%s", out)
	}
}

// After the subscription connection is killed, go-redis reconnects and
// re-subscribes. The subscribers that may have missed events meanwhile are
// dropped (so they resync from the store); new ones receive, each only
// their own run's events, routed by channel.
func TestBusSurvivesReconnect(t *testing.T) {
	addr := testsvc.StartRedis(t)
	c := open(t, addr)
	b := newBus(t, c, nil)
	pub := newBus(t, open(t, addr), nil)
	ctx := context.Background()
	before, err := b.Subscribe(ctx, alice, "run_1")
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	killed, err := c.rdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
	if err != nil || killed == 0 {
		t.Fatalf("CLIENT KILL TYPE pubsub = %d, %v", killed, err)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for alive := true; alive; {
		select {
		case _, alive = <-before.Events():
		case <-timer.C:
			t.Fatal("subscriber not dropped after the reconnection")
		}
	}
	if !before.Dropped() {
		t.Fatal("subscription ended without Dropped after a reconnection")
	}
	aSub, err := b.Subscribe(ctx, alice, "run_1")
	if err != nil {
		t.Fatal(err)
	}
	defer aSub.Close()
	bSub, err := b.Subscribe(ctx, bob, "run_2")
	if err != nil {
		t.Fatal(err)
	}
	defer bSub.Close()
	if err := pub.Publish(ctx, ev("bob", "run_2", 7)); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, ev("alice", "run_1", 8)); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, aSub); got.UserID != "alice" || got.Seq != 8 {
		t.Fatalf("alice got %+v", got)
	}
	if got := recv(t, bSub); got.UserID != "bob" || got.Seq != 7 {
		t.Fatalf("bob got %+v", got)
	}
	wantNothing(t, aSub, "alice")
	wantNothing(t, bSub, "bob")
	if n := numsub(t, c, b.Channel("alice", "run_1")); n != 1 {
		t.Fatalf("NUMSUB = %d after the reconnection, want 1", n)
	}
}

func TestBusClose(t *testing.T) {
	c := open(t, testsvc.StartRedis(t))
	b := NewBus(c, nil)
	ctx := context.Background()
	sub, err := b.Subscribe(ctx, alice, "run_1")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for range sub.Events() {
	}
	if !sub.Dropped() {
		t.Fatal("a subscriber cut off by Close is not reported dropped")
	}
	if _, err := b.Subscribe(ctx, alice, "run_1"); err != ErrBusClosed {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSubscribeHonoursContext(t *testing.T) {
	c := open(t, testsvc.StartRedis(t))
	b := newBus(t, c, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if sub, err := b.Subscribe(ctx, alice, "run_1"); err == nil || sub != nil {
		t.Fatalf("Subscribe with a cancelled context = (%v, %v)", sub, err)
	}
	if n := numsub(t, c, b.Channel("alice", "run_1")); n != 0 {
		t.Fatalf("NUMSUB = %d", n)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func BenchmarkScopedGet(b *testing.B) {
	c := open(b, testsvc.StartRedis(b))
	ctx := context.Background()
	s := cache.NewScoped(NewCache(c), time.Hour)
	value := bytes.Repeat([]byte("v"), 1<<10)
	if err := s.Set(ctx, alice, "doc", "doc_0123456789abcdef", value); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	for b.Loop() {
		v, ok, err := s.Get(ctx, alice, "doc", "doc_0123456789abcdef")
		if err != nil || !ok || len(v) != len(value) {
			b.Fatalf("Get = (%d bytes, %v, %v)", len(v), ok, err)
		}
	}
}

// BenchmarkBusFanout is one event's trip: Publish on one replica, through
// Redis, to every one of N local subscribers of the run on another.
func BenchmarkBusFanout(b *testing.B) {
	addr := testsvc.StartRedis(b)
	pub := newBus(b, open(b, addr), nil)
	sub := newBus(b, open(b, addr), nil)
	ctx := context.Background()
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			run := fmt.Sprintf("run_bench_%d", n)
			subs := make([]idflow.Subscription, n)
			for i := range subs {
				s, err := sub.Subscribe(ctx, alice, run)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				subs[i] = s
			}
			e := ev("alice", run, 1)
			b.ReportAllocs()
			for b.Loop() {
				if err := pub.Publish(ctx, e); err != nil {
					b.Fatal(err)
				}
				for _, s := range subs {
					if _, ok := <-s.Events(); !ok {
						b.Fatal("subscriber dropped")
					}
				}
			}
		})
	}
}
