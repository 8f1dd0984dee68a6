package httpapi

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// countingConn counts the write system calls made on a socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// A burst of events held in a batch leaves in one write, and still arrives
// as one WebSocket message per event, in order; outside a batch every
// message is written at once.
func TestBatchWriterOneWritePerBurst(t *testing.T) {
	type accepted struct {
		conn *websocket.Conn
		out  *batchWriter
		cc   *countingConn
	}
	got := make(chan accepted, 1)
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := &batchWriter{}
		conn, err := websocket.Accept(smallBuffers{w, out}, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		out.mu.Lock()
		cc := &countingConn{Conn: out.conn}
		out.conn = cc
		out.mu.Unlock()
		got <- accepted{conn, out, cc}
		<-done
	}))
	defer srv.Close()
	defer close(done)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseNow()
	a := <-got

	a.out.hold()
	for i := range 3 {
		if err := a.conn.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf(`{"seq":%d}`, i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.cc.writes.Load(); n != 0 {
		t.Fatalf("%d writes while the batch was held", n)
	}
	if err := a.out.release(); err != nil {
		t.Fatal(err)
	}
	if n := a.cc.writes.Load(); n != 1 {
		t.Fatalf("a burst of 3 messages took %d writes, want 1", n)
	}
	// Not held: written at once.
	if err := a.conn.Write(ctx, websocket.MessageText, []byte(`{"seq":4}`)); err != nil {
		t.Fatal(err)
	}
	if n := a.cc.writes.Load(); n != 2 {
		t.Fatalf("an unheld message: %d writes in all, want 2", n)
	}
	for i := range 4 {
		typ, b, err := client.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"seq":%d}`, i+1); typ != websocket.MessageText || string(b) != want {
			t.Fatalf("message %d: %v %q, want one text message %q", i, typ, b, want)
		}
	}
}

// A batch never outlives a failed socket: once a write fails, release and
// later writes report it, and nothing is written after the failure.
func TestBatchWriterStopsAtTheFirstFailure(t *testing.T) {
	server, client := net.Pipe()
	client.Close() // every write to server now fails
	b := &batchWriter{conn: server}
	b.hold()
	if _, err := b.Write([]byte("x")); err != nil {
		t.Fatalf("a held write failed before anything was sent: %v", err)
	}
	if err := b.release(); err == nil {
		t.Fatal("release reported no error on a closed socket")
	}
	if _, err := b.Write([]byte("y")); err == nil {
		t.Fatal("a write after a failure succeeded")
	}
	b.hold()
	if err := b.release(); err == nil {
		t.Fatal("the failure was forgotten by the next batch")
	}
}
