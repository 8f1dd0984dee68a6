package mcpclient

import (
	"testing"
	"time"
)

func TestLRUBoundAndExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLRU[string, int](2, func() time.Time { return now })
	l.put("a", 1, time.Minute)
	l.put("b", 2, time.Minute)
	if v, ok := l.get("a"); !ok || v != 1 { // a is now the most recent
		t.Fatalf("a: %d %v", v, ok)
	}
	l.put("c", 3, time.Minute) // evicts b, the least recently used
	if _, ok := l.get("b"); ok {
		t.Fatal("b survived past the bound")
	}
	if v, ok := l.get("c"); !ok || v != 3 || len(l.items) != 2 {
		t.Fatalf("c: %d %v (%d items)", v, ok, len(l.items))
	}
	now = now.Add(time.Minute)
	if _, ok := l.get("a"); ok {
		t.Fatal("a outlived its TTL")
	}
	if len(l.items) != 1 {
		t.Fatalf("%d items after expiry", len(l.items))
	}
}
