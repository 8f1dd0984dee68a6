package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/idflow/idflow"
)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	logUserKey
)

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// logUser lets the access log name the user a handler served.
type logUser struct{ id string }

func setLogUser(ctx context.Context, id string) {
	if lu, ok := ctx.Value(logUserKey).(*logUser); ok {
		lu.id = id
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
// security headers and CORS (so error answers carry CORS headers too).
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		lu := &logUser{}
		ctx := context.WithValue(context.WithValue(r.Context(), requestIDKey, id), logUserKey, lu)
		ctx = idflow.WithRequestInfo(ctx, idflow.RequestInfo{RequestID: id, Peer: r.RemoteAddr})
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}
		h := sw.Header()
		h.Set("X-Request-Id", id)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
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
			// The path only: a query string may carry a token.
			s.log.InfoContext(ctx, "http",
				"method", r.Method, "path", r.URL.Path, "status", sw.status, "bytes", sw.bytes,
				"duration_ms", float64(time.Since(start).Microseconds())/1000,
				"request_id", id, "user_id", lu.id, "peer", r.RemoteAddr)
		}()
		if s.cors(sw, r) {
			return
		}
		next.ServeHTTP(sw, r)
	})
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
