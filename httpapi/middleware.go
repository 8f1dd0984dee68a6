package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/idflow/idflow"
)

type ctxKey int

const requestStateKey ctxKey = iota

// requestState is what the middleware keeps for one request: its id, the
// user a handler served (for the access log), and the response's status
// and size. One allocation and one context value instead of four.
type requestState struct {
	sw   statusWriter
	id   string
	user string
}

func stateOf(ctx context.Context) *requestState {
	st, _ := ctx.Value(requestStateKey).(*requestState)
	return st
}

func requestID(ctx context.Context) string {
	if st := stateOf(ctx); st != nil {
		return st.id
	}
	return ""
}

// setLogUser lets the access log name the user a handler served.
func setLogUser(ctx context.Context, id string) {
	if st := stateOf(ctx); st != nil {
		st.user = id
	}
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack (WebSockets).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// middleware wraps every request: recovery, request id, access log,
// security headers, the body's deadline and per-peer limit, and CORS (so
// error answers carry CORS headers too).
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		st := &requestState{sw: statusWriter{ResponseWriter: w}, id: id}
		ctx := context.WithValue(r.Context(), requestStateKey, st)
		ctx = idflow.WithRequestInfo(ctx, idflow.RequestInfo{RequestID: id, Peer: r.RemoteAddr})
		r = r.WithContext(ctx)
		sw := &st.sw
		// The header values share one array: one allocation, not four.
		vals := [...]string{id, "nosniff", "no-referrer", "DENY"}
		v := vals[:]
		h := sw.Header()
		h["X-Request-Id"] = v[0:1:1]
		h["X-Content-Type-Options"] = v[1:2:2]
		h["Referrer-Policy"] = v[2:3:3]
		h["X-Frame-Options"] = v[3:4:4]
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(ctx, "panic", "panic", fmt.Sprint(v), "request_id", id)
				if sw.status == 0 {
					writeProblem(sw, http.StatusInternalServerError, "internal", "internal error")
				}
			}
			s.accessLog(ctx, r, st, start)
		}()
		if bodyRemains(r) { // first: every answer below may leave the body unread
			release, ok := s.guardBody(sw, r)
			defer release()
			if !ok {
				return
			}
		}
		if s.cors(sw, r) {
			return
		}
		next.ServeHTTP(sw, r)
	})
}

// accessLog writes the request's line: typed attributes (no reflection, no
// boxing), and only when the level is on. The path only: a query string
// may carry a token.
func (s *Server) accessLog(ctx context.Context, r *http.Request, st *requestState, start time.Time) {
	if !s.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "http",
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", st.sw.status), slog.Int64("bytes", st.sw.bytes),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		slog.String("request_id", st.id), slog.String("user_id", st.user), slog.String("peer", r.RemoteAddr))
}

// cors sets CORS headers for allowed origins and answers preflights. It
// reports whether the request was fully answered.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	if oauthPublicPaths[r.URL.Path] { // handlers_oauth.go: any origin, no credentials
		h.Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST")
			h.Set("Access-Control-Allow-Headers", "Content-Type, Mcp-Protocol-Version")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return true
		}
		return false
	}
	allowed := slices.Contains(s.cfg.CORSOrigins, origin)
	if allowed {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Set("Access-Control-Expose-Headers", "X-Request-Id, WWW-Authenticate, Location, Mcp-Session-Id")
	}
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		if allowed {
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-CSRF-Token, X-Request-Id, Mcp-Session-Id, Mcp-Protocol-Version")
			h.Set("Access-Control-Max-Age", "600")
		}
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validRequestID accepts a caller's id only if it is short and plain, so it
// cannot smuggle anything into logs.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	return strings.IndexFunc(id, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_')
	}) < 0
}

// bodyRemains reports whether r has a body still to be read.
func bodyRemains(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// guardBody bounds a request body in time and in number. It counts the body
// against its peer's bodies in flight, refusing with 429 beyond
// Config.MaxBodiesPerPeer, and sets a read deadline of Config.BodyTimeout
// (wrap sets it again for the route's limit) — also on a request answered
// without its body, which the server drains before it reuses the
// connection. When the body has arrived whole, the server lifts the
// deadline itself (it then reads the connection in the background to see
// the client leave), so a handler that answers slowly, or streams, is not
// cut off. ok is false when the request was answered.
func (s *Server) guardBody(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout)) // not every connection supports it (tests' recorders)
	release, ok = s.bodies.acquire(peerHost(r))
	if !ok {
		// Refused and closed: expire the deadline, so that the server does
		// not wait for the unread body before it closes the connection.
		_ = rc.SetReadDeadline(time.Now())
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusTooManyRequests, idflow.ERATELIMIT,
			fmt.Sprintf("too many request bodies in flight from your address (limit %d)", s.cfg.MaxBodiesPerPeer))
		return func() {}, false
	}
	release = sync.OnceFunc(release)
	r.Body = &guardedBody{ReadCloser: r.Body, rc: rc, release: release}
	return release, true
}

// setBodyDeadline gives r's body d from now to arrive (d > 0), or lifts
// its deadline (d == 0), unless the body has already ended.
func setBodyDeadline(r *http.Request, d time.Duration) {
	b, ok := r.Body.(*guardedBody)
	if !ok || b.ended {
		return
	}
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	_ = b.rc.SetReadDeadline(t)
}

// guardedBody gives up a body's place among its peer's bodies in flight
// when the body ends, and tells a deadline that fired from other errors.
type guardedBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	release func()
	ended   bool
}

func (b *guardedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.ended {
		b.ended = true
		b.release()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w: %w", errBodyTimeout, err)
	}
	return n, err
}

// errBodyTimeout is a request body that did not arrive within its
// deadline: 408, whatever the handler wrapped it in.
var errBodyTimeout = errors.New("the request body did not arrive in time")

func (b *guardedBody) Close() error {
	b.release()
	return b.ReadCloser.Close()
}

// peerBodies counts request bodies in flight per peer address.
type peerBodies struct {
	limit int
	mu    sync.Mutex
	n     map[string]int
}

func (p *peerBodies) acquire(peer string) (release func(), ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[peer] >= p.limit {
		return nil, false
	}
	p.n[peer]++
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.n[peer]--; p.n[peer] <= 0 {
			delete(p.n, peer)
		}
	}, true
}

// bodyTimeout is how long a route's body may take to arrive: BodyTimeout
// for the JSON limit, proportionally more for a larger limit (uploads), and
// no deadline (0) for a WebSocket or the MCP stream, which hold their
// connection for as long as they live.
func (s *Server) bodyTimeout(rt route, limit int64) time.Duration {
	if rt.ws || rt.mcp && rt.method == http.MethodGet {
		return 0
	}
	if limit <= s.cfg.MaxBodyBytes {
		return s.cfg.BodyTimeout
	}
	return time.Duration(float64(s.cfg.BodyTimeout) * float64(limit) / float64(s.cfg.MaxBodyBytes))
}
