package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestSSEKeepAlive: a turn's stream writes a comment line on a tick that
// follows a whole tick with nothing written — never before the stream
// began, never inside an event — and stops taking ticks when stopped.
func TestSSEKeepAlive(t *testing.T) {
	rec := httptest.NewRecorder()
	sse := &sseWriter{w: rec, rc: http.NewResponseController(rec)}
	const comment = ": keep-alive\n\n"

	sse.comment()
	sse.comment()
	if rec.Body.Len() != 0 {
		t.Fatalf("before the first event: %q written; want nothing", rec.Body.String())
	}
	if err := sse.send("message", map[string]string{"text": "hi"}); err != nil {
		t.Fatal(err)
	}
	sse.comment() // an event was written since the last tick
	if strings.Contains(rec.Body.String(), comment) {
		t.Fatalf("a keep-alive right after an event: %q", rec.Body.String())
	}
	sse.comment() // a whole tick with nothing written
	sse.comment()
	body := rec.Body.String()
	if n := strings.Count(body, comment); n != 2 {
		t.Fatalf("body %q has %d keep-alives; want 2", body, n)
	}
	if !strings.HasPrefix(body, "event: message\ndata: {\"text\":\"hi\"}\n\n") {
		t.Fatalf("body %q: the event is not whole and first", body)
	}

	tick := make(chan time.Time)
	stop := sse.keepAlive(tick)
	tick <- time.Time{}
	tick <- time.Time{} // taken only once the previous tick's comment is written
	stop()
	if n := strings.Count(rec.Body.String(), comment); n < 3 {
		t.Fatalf("%d keep-alives after two more quiet ticks; want at least 3", n)
	}
	select {
	case tick <- time.Time{}:
		t.Fatal("a tick was taken after stop")
	default:
	}
}
