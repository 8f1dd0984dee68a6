package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/service"
)

// sseWriteTimeout bounds the write of one event: a client that stops
// reading cannot hold the turn (its model call, its tools) for ever.
const sseWriteTimeout = 30 * time.Second

// sseKeepAlive is how often a turn's stream says it is alive while nothing
// else is sent (a long tool call, a slow model): proxies close a response
// idle for 60 s by default (nginx's proxy_read_timeout).
const sseKeepAlive = 15 * time.Second

// acceptsEventStream reports whether r asks for Server-Sent Events.
func acceptsEventStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "text/event-stream" {
				return true
			}
		}
	}
	return false
}

// streamMessage runs an agent turn as Server-Sent Events (docs/AGENTS.md):
// message, memory, tool_call, tool_result, delta, reply, then done; a
// failure after the stream began is an error event (a problem+json
// object), and the turn stores nothing. A refusal before it began (bad
// content, another user's session) is an ordinary problem+json answer. The
// turn runs on the request's context, so a client that disconnects cancels
// the model call; the service bounds the turn's whole time.
func streamMessage(svc *service.Service, log *slog.Logger, w http.ResponseWriter, r *http.Request, p idflow.Principal, content string) error {
	sse := &sseWriter{w: w, rc: http.NewResponseController(w)}
	defer sse.close()
	tick := time.NewTicker(sseKeepAlive)
	defer tick.Stop()
	stopKeepAlive := sse.keepAlive(tick.C)
	defer stopKeepAlive()
	_, err := svc.StreamMessage(r.Context(), p, r.PathValue("session_id"), content, sse.event)
	switch {
	case err == nil:
		_ = sse.send("done", struct{}{})
		return nil
	case !sse.started:
		return err
	case r.Context().Err() != nil:
		return nil // the client left: nobody to tell
	}
	code := idflow.ErrorCode(err)
	status := statusOf(code)
	if status >= 500 {
		log.ErrorContext(r.Context(), "agent turn failed", "err", err, "request_id", requestID(r.Context()))
	}
	_ = sse.send("error", newProblem(status, code, idflow.ErrorMessage(err)))
	return nil
}

// sseWriter writes Server-Sent Events, each flushed as it is written. The
// 200 and its headers go out with the first event. Events and keep-alive
// comments come from two goroutines; mu keeps each whole.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	mu      sync.Mutex
	started bool
	quiet   bool // nothing written since the last tick
}

func (e *sseWriter) event(ev service.TurnEvent) error { return e.send(ev.Type, ev.Data) }

// keepAlive writes a comment line on each tick that found the stream
// started and quiet since the previous one, until the returned stop is
// called; stop returns once nothing more will be written.
func (e *sseWriter) keepAlive(tick <-chan time.Time) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-tick:
				e.comment()
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func (e *sseWriter) comment() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.started || !e.quiet {
		e.quiet = true
		return
	}
	_ = e.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	if _, err := io.WriteString(e.w, ": keep-alive\n\n"); err == nil {
		_ = e.rc.Flush()
	}
}

func (e *sseWriter) send(name string, data any) error {
	b, err := json.Marshal(data) // one line: JSON escapes every newline
	if err != nil {
		return fmt.Errorf("event %s: %w", name, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.quiet = false
	if !e.started {
		h := e.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Accel-Buffering", "no") // nginx: pass each event on at once
		e.w.WriteHeader(http.StatusOK)
		e.started = true
	}
	_ = e.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout)) // not every writer supports it (tests' recorders)
	if _, err := fmt.Fprintf(e.w, "event: %s\ndata: %s\n\n", name, b); err != nil {
		return err
	}
	return e.rc.Flush()
}

// close lifts the write deadline, which would otherwise outlive the
// request on a kept-alive connection.
func (e *sseWriter) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		_ = e.rc.SetWriteDeadline(time.Time{})
	}
}
