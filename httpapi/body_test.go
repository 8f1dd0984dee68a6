package httpapi

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// rawConn is a client that writes the bytes of a request itself, so it can
// stop in the middle of a body like a slow-loris client.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The test's own bound: far beyond any deadline under test.
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

// post sends the head of a POST with a body of n bytes, none of it yet.
func (c *rawConn) post(path string, n int, extra ...string) {
	c.send(fmt.Sprintf("POST %s HTTP/1.1\r\nHost: idflow\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n",
		path, n, strings.Join(extra, "")))
}

// response reads one response (an interim 100 Continue included).
func (c *rawConn) response() (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("reading the response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// closed reports whether the server has closed the connection.
func (c *rawConn) closed() bool {
	_, err := c.br.ReadByte()
	return err == io.EOF
}

// TestSlowBodyTimesOut: a client that sends one byte of its body and then
// nothing gets 408 when the body deadline fires, and the connection is
// closed. A request whose body arrived before, and whose handler is still
// working when that deadline has long fired for it too, is not cut off:
// the deadline ends with the body.
func TestSlowBodyTimesOut(t *testing.T) {
	s := New(Config{PublicURL: "http://127.0.0.1", BodyTimeout: 300 * time.Millisecond}, Deps{})
	release := make(chan struct{})
	srv := httptest.NewServer(s.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			s.writeError(w, r, err)
			return
		}
		select {
		case <-release:
			fmt.Fprint(w, "alive")
		case <-r.Context().Done():
			fmt.Fprint(w, "cancelled")
		}
	})))
	t.Cleanup(srv.Close) // after the clients close (cleanups run last first)
	addr := srv.Listener.Addr().String()

	patient := dialRaw(t, addr) // its body arrives whole; its handler waits
	patient.post("/work", 2)
	patient.send("{}")

	loris := dialRaw(t, addr)
	loris.post("/work", 100)
	loris.send("{")
	resp, body := loris.response() // comes when the deadline fires
	if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(body, "did not arrive in time") {
		t.Fatalf("slow body: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if !loris.closed() {
		t.Fatal("the slow client's connection is still open")
	}

	close(release)
	if resp, body := patient.response(); resp.StatusCode != http.StatusOK || body != "alive" {
		t.Fatalf("the request whose body had arrived: %d %q", resp.StatusCode, body)
	}
}

// TestBodiesPerPeer: one address may send only MaxBodiesPerPeer bodies at
// once; the next gets 429 at once (problem+json, connection closed); when a
// body ends, its place is free again.
func TestBodiesPerPeer(t *testing.T) {
	s := New(Config{PublicURL: "http://127.0.0.1", MaxBodiesPerPeer: 2, BodyTimeout: time.Minute}, Deps{})
	srv := httptest.NewServer(s.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		fmt.Fprintf(w, "%d bytes", len(b))
	})))
	t.Cleanup(srv.Close) // after the clients close (cleanups run last first)
	addr := srv.Listener.Addr().String()

	var slow []*rawConn
	for range 2 {
		c := dialRaw(t, addr)
		// 100 Continue is sent when the handler starts reading: the body
		// is then counted.
		c.post("/upload", 4, "Expect: 100-continue\r\n")
		if resp, _ := c.response(); resp.StatusCode != http.StatusContinue {
			t.Fatalf("want 100 Continue, got %d", resp.StatusCode)
		}
		slow = append(slow, c)
	}
	third := dialRaw(t, addr)
	third.post("/upload", 4)
	resp, body := third.response()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(body, "limit 2") {
		t.Fatalf("third body: %d %s", resp.StatusCode, body)
	}
	if !third.closed() {
		t.Fatal("the refused connection is still open")
	}

	// A GET without a body is never counted.
	get := dialRaw(t, addr)
	get.send("GET / HTTP/1.1\r\nHost: idflow\r\n\r\n")
	if resp, _ := get.response(); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET while bodies are in flight: %d", resp.StatusCode)
	}

	// The first slow body ends: its place is free once its answer is out.
	slow[0].send("{}  ")
	if resp, body := slow[0].response(); resp.StatusCode != http.StatusOK || body != "4 bytes" {
		t.Fatalf("first body: %d %q", resp.StatusCode, body)
	}
	next := dialRaw(t, addr)
	next.post("/upload", 2)
	next.send("{}")
	if resp, body := next.response(); resp.StatusCode != http.StatusOK || body != "2 bytes" {
		t.Fatalf("a body after one ended: %d %q", resp.StatusCode, body)
	}
}

// TestBodyTimeoutPerRoute: uploads get time in proportion to their limit;
// WebSockets and the MCP stream get no body deadline at all.
func TestBodyTimeoutPerRoute(t *testing.T) {
	s := New(Config{PublicURL: "http://127.0.0.1", BodyTimeout: 10 * time.Second}, Deps{})
	for _, rt := range s.api {
		got := s.bodyTimeout(rt, map[bool]int64{true: rt.body, false: s.cfg.MaxBodyBytes}[rt.body > 0])
		want := 10 * time.Second
		switch {
		case rt.ws || rt.mcp && rt.method == http.MethodGet:
			want = 0
		case rt.body == 10<<20:
			want = 100 * time.Second
		}
		if got != want {
			t.Errorf("%s %s: body timeout %v, want %v", rt.method, rt.pattern, got, want)
		}
	}
}
