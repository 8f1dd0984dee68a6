package httpapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/service"
)

// sseWriteTimeout bounds the write of one event: a client that stops
// reading cannot hold the turn (its model call, its tools) for ever.
const sseWriteTimeout = 30 * time.Second

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
// 200 and its headers go out with the first event.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

func (e *sseWriter) event(ev service.TurnEvent) error { return e.send(ev.Type, ev.Data) }

func (e *sseWriter) send(name string, data any) error {
	b, err := json.Marshal(data) // one line: JSON escapes every newline
	if err != nil {
		return fmt.Errorf("event %s: %w", name, err)
	}
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
	if e.started {
		_ = e.rc.SetWriteDeadline(time.Time{})
	}
}
