package lifecycle

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// fakeSource is a store's lifecycle state, counting group reads.
type fakeSource struct {
	mu         sync.Mutex
	disabled   []idflow.UserRef
	groups     map[idflow.UserRef][]string
	groupReads int
}

func (f *fakeSource) DisabledUsers(context.Context) ([]idflow.UserRef, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.disabled), nil
}

func (f *fakeSource) DirectoryGroupsOf(_ context.Context, p idflow.Principal) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.groupReads++
	return f.groups[idflow.UserRef{TenantID: p.TenantID, UserID: p.UserID}], nil
}

func (f *fakeSource) setDisabled(refs ...idflow.UserRef) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disabled = refs
}

// loopback is a Notifier that delivers to every Set subscribed to it,
// as Redis does to every replica.
type loopback struct {
	mu   sync.Mutex
	subs []func([]byte)
}

func (l *loopback) Publish(_ context.Context, msg []byte) error {
	l.mu.Lock()
	subs := slices.Clone(l.subs)
	l.mu.Unlock()
	for _, fn := range subs {
		fn(msg)
	}
	return nil
}

func (l *loopback) Subscribe(_ context.Context, fn func([]byte)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.subs = append(l.subs, fn)
	return nil
}

// TestTwoReplicas: a change recorded by replica A applies on A at once and
// on B by A's announcement, hooks run once per newly disabled user, the
// tenant counts, and directory groups are cached until a change.
func TestTwoReplicas(t *testing.T) {
	src := &fakeSource{groups: map[idflow.UserRef][]string{}}
	bus := &loopback{}
	alice := idflow.UserRef{TenantID: "t-one", UserID: "alice"}
	newSet := func() *Set {
		s := New(Config{Source: src, Notifier: bus, Poll: time.Hour})
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b := newSet(), newSet()
	var hooked []idflow.UserRef
	var mu sync.Mutex
	b.OnDisable(func(r idflow.UserRef) { mu.Lock(); hooked = append(hooked, r); mu.Unlock() })

	src.setDisabled(alice)
	if b.Disabled("t-one", "alice") {
		t.Fatal("B knew before anyone announced it")
	}
	if err := a.StateChanged(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !a.Disabled("t-one", "alice") || !b.Disabled("t-one", "alice") {
		t.Fatal("alice not disabled on both replicas after A's announcement")
	}
	if b.Disabled("t-two", "alice") || b.Disabled("t-one", "bob") {
		t.Fatal("another tenant's alice, or bob, disabled too")
	}
	_ = a.StateChanged(context.Background()) // again: no new hook
	mu.Lock()
	if len(hooked) != 1 || hooked[0] != alice {
		t.Fatalf("B's hooks ran for %v; want alice once", hooked)
	}
	mu.Unlock()
	src.setDisabled()
	_ = a.StateChanged(context.Background())
	if b.Disabled("t-one", "alice") {
		t.Fatal("alice still disabled on B after re-enabling")
	}

	// Directory groups: read once, cached, re-read after a change.
	p := authtest.User("alice", "t-one")
	src.groups[alice] = []string{"research"}
	for range 3 {
		if g := b.DirectoryGroups(context.Background(), p); !slices.Equal(g, []string{"research"}) {
			t.Fatalf("groups %v", g)
		}
	}
	if src.groupReads != 1 {
		t.Fatalf("%d reads of alice's groups; want 1 (cached)", src.groupReads)
	}
	src.mu.Lock()
	src.groups[alice] = nil
	src.mu.Unlock()
	_ = a.GroupsChanged(context.Background())
	if g := b.DirectoryGroups(context.Background(), p); len(g) != 0 {
		t.Fatalf("B's groups after A's change: %v; want none", g)
	}
	if g := b.DirectoryGroups(context.Background(), authtest.User("alice", "t-two")); len(g) != 0 {
		t.Fatalf("t-two's alice has t-one's groups: %v", g)
	}
}

// TestPollFindsChanges: without announcements, a replica finds a change
// by polling (the deadline is the test's, the clock the ticker's).
func TestPollFindsChanges(t *testing.T) {
	src := &fakeSource{}
	s := New(Config{Source: src, Poll: 10 * time.Millisecond})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	src.setDisabled(idflow.UserRef{TenantID: "t", UserID: "u"})
	deadline := time.Now().Add(5 * time.Second)
	for !s.Disabled("t", "u") {
		if time.Now().After(deadline) {
			t.Fatal("the poll did not find the disabled user within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
