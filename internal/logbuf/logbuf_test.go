package logbuf

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// sink records each write call separately.
type sink struct {
	mu     sync.Mutex
	writes []string
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes = append(s.writes, string(p))
	return len(p), nil
}

func (s *sink) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.writes...)
}

func TestLinesAreBatchedInOrder(t *testing.T) {
	s := &sink{}
	w := New(s, 1<<10, time.Hour)
	for i := range 10 {
		fmt.Fprintf(w, "line %d\n", i)
	}
	if got := s.snapshot(); len(got) != 0 {
		t.Fatalf("written before a flush: %q", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := s.snapshot()
	if len(got) != 1 || !strings.HasPrefix(got[0], "line 0\nline 1\n") || !strings.HasSuffix(got[0], "line 9\n") {
		t.Fatalf("one batch in order expected, got %q", got)
	}
}

func TestTimerFlushes(t *testing.T) {
	s := &sink{}
	w := New(s, 1<<10, 10*time.Millisecond)
	fmt.Fprintln(w, "first")
	deadline := time.Now().Add(10 * time.Second)
	for len(s.snapshot()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a buffered line was never written out")
		}
		time.Sleep(time.Millisecond)
	}
	// Armed again by the next line.
	fmt.Fprintln(w, "second")
	for len(s.snapshot()) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the second line was never written out")
		}
		time.Sleep(time.Millisecond)
	}
	if got := s.snapshot(); got[0] != "first\n" || got[1] != "second\n" {
		t.Fatalf("got %q", got)
	}
}

// A full buffer is written out before the record that does not fit; a
// record larger than the buffer goes straight through, after it.
func TestOverflowKeepsRecordsWholeAndOrdered(t *testing.T) {
	s := &sink{}
	w := New(s, 16, time.Hour)
	fmt.Fprint(w, "aaaaaaaaaa\n")               // 11
	fmt.Fprint(w, "bbbbbbbbbb\n")               // does not fit: a's out first
	fmt.Fprint(w, strings.Repeat("c", 40)+"\n") // larger than the buffer
	_ = w.Flush()
	want := []string{"aaaaaaaaaa\n", "bbbbbbbbbb\n", strings.Repeat("c", 40) + "\n"}
	if got := s.snapshot(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestWarningsFlushAtOnce(t *testing.T) {
	s := &sink{}
	w := New(s, 1<<10, time.Hour)
	log := slog.New(Handler(slog.NewTextHandler(w, nil), w, slog.LevelWarn)).With("component", "test")
	log.Info("routine")
	if got := s.snapshot(); len(got) != 0 {
		t.Fatalf("an info record was flushed at once: %q", got)
	}
	log.WithGroup("g").Warn("trouble", "k", "v")
	got := strings.Join(s.snapshot(), "")
	if !strings.Contains(got, "msg=routine") || !strings.Contains(got, "msg=trouble") || !strings.Contains(got, "g.k=v") {
		t.Fatalf("a warning did not flush what was buffered with it: %q", got)
	}
}

func TestConcurrentRecordsStayWhole(t *testing.T) {
	var out bytes.Buffer
	w := New(&out, 256, time.Millisecond)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				fmt.Fprintf(w, "g%d i%d %s\n", g, i, strings.Repeat("x", i%40))
			}
		}()
	}
	wg.Wait()
	_ = w.Close()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 8*500 {
		t.Fatalf("%d lines, want %d", len(lines), 8*500)
	}
	for _, l := range lines {
		var g, i int
		var x string
		if n, _ := fmt.Sscanf(l, "g%d i%d %s", &g, &i, &x); n < 2 || len(x) != i%40 && !(i%40 == 0 && n == 2) {
			t.Fatalf("a record was split or mixed: %q", l)
		}
	}
}
