package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/service"
)

// WebSocket protocol constants (docs/ARCHITECTURE.md, the run socket).
const (
	wsSubprotocol    = "idflow.v1"
	wsBearerPrefix   = "bearer."
	wsCloseExpired   = websocket.StatusCode(4401) // the token expired mid-stream
	wsCloseDisabled  = websocket.StatusCode(4403) // the user was disabled mid-stream
	wsPingInterval   = 30 * time.Second
	wsWriteTimeout   = 10 * time.Second
	wsReplayPage     = 500
	defaultWSPerUser = 50
)

// authenticateWS authenticates a WebSocket handshake. Sources, in order:
// the Authorization header; the subprotocols idflow.v1 + bearer.<JWT>; the
// access_token query parameter, only when IDFLOW_WS_QUERY_TOKEN allows it;
// the session cookie, only with an allowed Origin.
func (s *Server) authenticateWS(r *http.Request) (idflow.Principal, error) {
	var none idflow.Principal
	if r.Header.Get("Authorization") != "" {
		return s.authn.Authenticate(r, s.cfg.APIAudiences)
	}
	protocols := wsProtocols(r)
	for _, proto := range protocols {
		if tok, ok := strings.CutPrefix(proto, wsBearerPrefix); ok {
			if !containsString(protocols, wsSubprotocol) {
				return none, idflow.Errorf(idflow.EUNAUTHORIZED, "a bearer subprotocol needs the %s subprotocol too", wsSubprotocol)
			}
			return s.authn.AuthenticateToken(r, tok, s.cfg.APIAudiences)
		}
	}
	if tok := r.URL.Query().Get("access_token"); tok != "" {
		if !s.cfg.InsecureWSQueryToken {
			return none, idflow.Errorf(idflow.EUNAUTHORIZED, "tokens in the query string are disabled (IDFLOW_WS_QUERY_TOKEN)")
		}
		return s.authn.AuthenticateToken(r, tok, s.cfg.APIAudiences)
	}
	p, err := s.authn.Authenticate(r, s.cfg.APIAudiences)
	if err != nil {
		return p, err
	}
	if p.AuthMethod == idflow.AuthSession && !s.allowedOrigin(r.Header.Get("Origin")) {
		// A cookie rides along with any page's WebSocket: only our own pages may use it.
		return none, idflow.WrapError(idflow.EFORBIDDEN, "this Origin may not open a WebSocket with the session cookie", auth.ErrCSRF)
	}
	return p, nil
}

// allowedOrigin reports whether origin is this server's own or a CORS origin.
func (s *Server) allowedOrigin(origin string) bool {
	if origin == "" {
		return false
	}
	if pu, err := url.Parse(s.cfg.PublicURL); err == nil && origin == pu.Scheme+"://"+pu.Host {
		return true
	}
	return containsString(s.cfg.CORSOrigins, origin)
}

func wsProtocols(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// trackSocket remembers an open socket of p's user: revoked is closed
// when CloseUser ends the user's sockets; forget drops the socket.
func (s *Server) trackSocket(p idflow.Principal) (revoked <-chan struct{}, forget func()) {
	ref := idflow.UserRef{TenantID: p.TenantID, UserID: p.UserID}
	ch := make(chan struct{})
	s.wsMu.Lock()
	defer s.wsMu.Unlock()
	if s.wsLive[ref] == nil {
		s.wsLive[ref] = socketEnds{}
	}
	s.wsLive[ref][ch] = struct{}{}
	return ch, func() {
		s.wsMu.Lock()
		defer s.wsMu.Unlock()
		delete(s.wsLive[ref], ch)
		if len(s.wsLive[ref]) == 0 {
			delete(s.wsLive, ref)
		}
	}
}

// socketEnds are the revoked channels of a user's open sockets.
type socketEnds map[chan struct{}]struct{}

// CloseUser closes the open WebSockets of a disabled user with 4403
// (package lifecycle calls it on every replica).
func (s *Server) CloseUser(ref idflow.UserRef) {
	s.wsMu.Lock()
	defer s.wsMu.Unlock()
	for ch := range s.wsLive[ref] {
		close(ch)
	}
	delete(s.wsLive, ref)
}

// acquireWS counts a user's open sockets against the per-user limit.
func (s *Server) acquireWS(userID string) (release func(), err error) {
	s.wsMu.Lock()
	defer s.wsMu.Unlock()
	limit := s.cfg.WSMaxPerUser
	if limit <= 0 {
		limit = defaultWSPerUser
	}
	if s.wsOpen[userID] >= limit {
		return nil, idflow.Errorf(idflow.ERATELIMIT, "too many open WebSockets (limit %d per user)", limit)
	}
	s.wsOpen[userID]++
	return func() {
		s.wsMu.Lock()
		defer s.wsMu.Unlock()
		if s.wsOpen[userID]--; s.wsOpen[userID] <= 0 {
			delete(s.wsOpen, userID)
		}
	}, nil
}

// handleRunSocket streams a run's events: history first, then live ones,
// closing with 1000 when the run ends and 4401 when the token expires.
// Another user's run answers 404 before any upgrade.
//
// Everything that can fail — the owner check, the per-user limit, the
// subscription and the first page of history — happens before the upgrade,
// on the request's goroutine. The stream itself then runs on a goroutine of
// its own and the handler returns: the request's goroutine, whose stack grew
// through authentication and the store, is not kept for the socket's life.
// (The access log therefore times the handshake, not the socket.)
func (s *Server) handleRunSocket(svc *service.Service, bus idflow.EventBus) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		runID := r.PathValue("run_id")
		if _, err := svc.GetRun(r.Context(), p, runID); err != nil && !wsAnyRun {
			return err
		}
		release, err := s.acquireWS(p.UserID)
		if err != nil {
			return err
		}
		// Subscribe before replaying, so no event falls between the two.
		ctx, cancelCtx := context.WithCancel(context.WithoutCancel(r.Context()))
		revoked, forget := s.trackSocket(p)
		cancel := func() { forget(); cancelCtx() }
		var sub idflow.Subscription
		handedOff := false // to the stream goroutine, which then releases all this
		defer func() {
			if !handedOff {
				if sub != nil {
					sub.Close()
				}
				cancel()
				release()
			}
		}()
		if sub, err = bus.Subscribe(ctx, p, runID); err != nil {
			return err
		}
		history, err := svc.ListEvents(ctx, p, runID, 0, wsReplayPage)
		if err != nil && !wsAnyRun {
			return err
		}

		out := &batchWriter{}
		conn, err := websocket.Accept(smallBuffers{w, out}, r, &websocket.AcceptOptions{
			Subprotocols:   []string{wsSubprotocol},
			OriginPatterns: originHosts(s.cfg.CORSOrigins),
		})
		if err != nil {
			return nil // Accept has answered the client
		}
		handedOff = true
		go func() {
			defer release()
			defer cancel()
			defer sub.Close()
			defer conn.CloseNow()
			conn.SetReadLimit(4096)
			ctx := conn.CloseRead(ctx) // handles pings and the client's close; we read nothing else
			rs := &runSocket{conn: conn, out: out, events: s.events, revoked: revoked}
			first := history
			history = nil // not kept for the socket's life
			code, reason, ended := rs.replay(ctx, first, func(ctx context.Context, afterSeq int64) ([]idflow.Event, error) {
				return svc.ListEvents(ctx, p, runID, afterSeq, wsReplayPage)
			})
			if !ended {
				code, reason = rs.live(ctx, p, sub)
			}
			_ = conn.Close(code, reason)
		}()
		return nil
	}
}

// endCode is how a socket closes after its run's last event: 4403 when
// the run was cancelled because its owner was disabled (whichever replica
// learns of it first), else 1000.
func endCode(e idflow.Event) (websocket.StatusCode, string, bool) {
	if e.CancelledByDeactivation() {
		return wsCloseDisabled, "user disabled", true
	}
	return websocket.StatusNormalClosure, "run ended", true
}

// runSocket is one WebSocket streaming one run's events. Replay and live
// streaming share lastSeq, so an event both read from the store and
// received from the bus is sent once.
//
// Events go out in bursts: every event already waiting is framed into out's
// batch and the batch leaves in one write system call, bounded by out's
// write deadline (a step emits several events at once; one write each was
// most of a 1,000-subscriber fan-out's CPU). Each event is still one
// WebSocket message. The writes' context has no deadline of its own, so
// coder/websocket arms no timer per message: out's deadline bounds them.
type runSocket struct {
	conn    *websocket.Conn
	out     *batchWriter
	events  *eventEncodings
	lastSeq int64 // the last event sent
	// revoked is closed when the user is disabled (Server.CloseUser).
	// Not a cancel of ctx: that would drop the connection without its
	// close frame.
	revoked <-chan struct{}
}

// write frames e into the batch unless it was sent already.
func (c *runSocket) write(ctx context.Context, e idflow.Event) error {
	if e.Seq <= c.lastSeq {
		return nil // already replayed
	}
	b, err := c.events.encode(e)
	if err != nil {
		return err
	}
	c.lastSeq = e.Seq
	return c.conn.Write(context.WithoutCancel(ctx), websocket.MessageText, b)
}

// replay sends the run's stored events: first (the page read before the
// upgrade), then the pages after it, read with next, one batch per page.
// ended reports that the socket must close with code and reason: the run
// ended, the client went away, or the history could not be read.
func (c *runSocket) replay(ctx context.Context, first []idflow.Event, next func(ctx context.Context, afterSeq int64) ([]idflow.Event, error)) (code websocket.StatusCode, reason string, ended bool) {
	for evs := first; ; {
		c.out.hold()
		for _, e := range evs {
			if err := c.write(ctx, e); err != nil {
				c.out.release()
				return websocket.StatusGoingAway, "", true
			}
			if e.Terminal() {
				if c.out.release() != nil {
					return websocket.StatusGoingAway, "", true
				}
				return endCode(e)
			}
		}
		if c.out.release() != nil {
			return websocket.StatusGoingAway, "", true
		}
		if len(evs) < wsReplayPage {
			return 0, "", false
		}
		var err error
		if evs, err = next(ctx, c.lastSeq); err != nil {
			return websocket.StatusInternalError, "could not read the run's history", true
		}
	}
}

// live sends the events of sub as they come until the run ends, p's token
// expires, the client goes away or falls behind, and answers the code and
// reason to close with. It pings the client every wsPingInterval.
func (c *runSocket) live(ctx context.Context, p idflow.Principal, sub idflow.Subscription) (websocket.StatusCode, string) {
	// burst writes e and every event already waiting behind it in one
	// batch. end reports that the socket must close with code and reason.
	burst := func(e idflow.Event, ok bool) (code websocket.StatusCode, reason string, end bool) {
		c.out.hold()
		code, reason, end = func() (websocket.StatusCode, string, bool) {
			for {
				if !ok {
					if sub.Dropped() {
						return websocket.StatusTryAgainLater, "too slow: reconnect to resume", true
					}
					return websocket.StatusGoingAway, "", true
				}
				if err := c.write(ctx, e); err != nil {
					return websocket.StatusGoingAway, "", true
				}
				if e.Terminal() {
					return endCode(e)
				}
				select {
				case e, ok = <-sub.Events():
				default:
					return 0, "", false
				}
			}
		}()
		if err := c.out.release(); err != nil {
			return websocket.StatusGoingAway, "", true
		}
		return code, reason, end
	}
	var expired <-chan time.Time
	if !p.ExpiresAt.IsZero() && p.AuthMethod != idflow.AuthProxyHeader {
		t := time.NewTimer(time.Until(p.ExpiresAt))
		defer t.Stop()
		expired = t.C
	}
	ping := time.NewTicker(wsPingInterval)
	defer ping.Stop()
	for {
		select {
		case e, ok := <-sub.Events():
			if code, reason, end := burst(e, ok); end {
				return code, reason
			}
		case <-expired:
			return wsCloseExpired, "token expired"
		case <-c.revoked:
			return wsCloseDisabled, "user disabled"
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, wsWriteTimeout)
			err := c.conn.Ping(pctx)
			cancel()
			if err != nil {
				return websocket.StatusGoingAway, "ping timeout"
			}
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), context.Canceled) {
				return websocket.StatusNormalClosure, ""
			}
			return websocket.StatusGoingAway, ""
		}
	}
}

// Bounds of eventEncodings: at most eventJSONEntries encodings of at most
// eventJSONMaxBytes each are kept.
const (
	eventJSONEntries  = 1024
	eventJSONMaxBytes = 4 << 10
)

type eventKey struct {
	user, run string
	seq       int64
}

// eventEncodings shares the encoding of an event among the sockets
// streaming it: a run watched by 1,000 sockets is encoded once, not 1,000
// times. (user, run, seq) names exactly one event and a stored event never
// changes, so the key cannot hand one user's event to another. Only small
// encodings are kept. Each Server has its own.
type eventEncodings struct {
	mu   sync.Mutex
	m    map[eventKey][]byte
	ring [eventJSONEntries]eventKey // insertion order, for eviction
	next int
}

func newEventEncodings() *eventEncodings {
	return &eventEncodings{m: map[eventKey][]byte{}}
}

func (c *eventEncodings) encode(e idflow.Event) ([]byte, error) {
	k := eventKey{e.UserID, e.RunID, e.Seq}
	c.mu.Lock()
	b, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return b, nil
	}
	b, err := json.Marshal(e)
	if err != nil || len(b) > eventJSONMaxBytes {
		return b, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok {
		return b, nil // encoded meanwhile by another socket
	}
	if old := c.ring[c.next]; old != (eventKey{}) {
		delete(c.m, old)
	}
	c.ring[c.next] = k
	c.next = (c.next + 1) % len(c.ring)
	c.m[k] = b
	return b, nil
}

// Buffers of a run socket after the upgrade. It reads only control frames
// and writes events of a few hundred bytes; net/http's hijacked buffers are
// 4 KiB each, a quarter of a socket's memory. A larger event is written
// through (one more write call), never truncated.
const (
	wsReadBuffer  = 512
	wsWriteBuffer = 2048
)

// smallBuffers hands websocket.Accept a hijacked connection with buffers
// of wsReadBuffer and wsWriteBuffer bytes, writing through out.
type smallBuffers struct {
	http.ResponseWriter
	out *batchWriter
}

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil { // normally empty: never lose a byte
		conn.Close()
		return nil, nil, err
	}
	// Whatever the client sent right behind the handshake, and net/http read
	// already, moves into the new reader's buffer (Accept keeps what is
	// buffered there and reads the connection after it).
	n := brw.Reader.Buffered()
	early, _ := brw.Reader.Peek(n)
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn), max(wsReadBuffer, n))
	if n > 0 {
		if _, err := br.Peek(n); err != nil {
			conn.Close()
			return nil, nil, err
		}
	}
	w.out.conn = conn
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(w.out, wsWriteBuffer)), nil
}

// batchWriter is what coder/websocket's buffered writer writes to: the
// socket, with a write deadline, or — between hold and release — a batch.
// The library flushes every message; held, those flushes only append, and
// release sends the batch in one write. Bytes pass through in the order
// the library wrote them (its own lock keeps frames whole, and control
// frames written meanwhile by its reader join the batch in order), so the
// stream on the wire is the same, only in fewer system calls.
type batchWriter struct {
	conn net.Conn

	mu       sync.Mutex
	held     bool
	batch    *[]byte   // from batchPool while held
	deadline time.Time // the socket's write deadline
	err      error     // the first failed write: the socket is done
}

// maxBatch is where a batch is sent before release: a long replay is
// written in chunks of this size.
const maxBatch = 64 << 10

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func (b *batchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if !b.held {
		return b.send(p)
	}
	*b.batch = append(*b.batch, p...)
	if len(*b.batch) >= maxBatch {
		if _, err := b.send(*b.batch); err != nil {
			return 0, err
		}
		*b.batch = (*b.batch)[:0]
	}
	return len(p), nil
}

// send writes p to the socket. A write has between half and all of
// wsWriteTimeout: the deadline moves only when less than half is left, not
// on every write.
func (b *batchWriter) send(p []byte) (int, error) {
	if now := time.Now(); b.deadline.Sub(now) < wsWriteTimeout/2 {
		b.deadline = now.Add(wsWriteTimeout)
		if err := b.conn.SetWriteDeadline(b.deadline); err != nil {
			b.err = err
			return 0, err
		}
	}
	n, err := b.conn.Write(p)
	if err != nil {
		b.err = err
	}
	return n, err
}

// hold starts a batch.
func (b *batchWriter) hold() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held = true
	b.batch = batchPool.Get().(*[]byte)
}

// release sends the batch and returns to writing through.
func (b *batchWriter) release() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.held {
		return b.err
	}
	b.held = false
	if len(*b.batch) > 0 && b.err == nil {
		_, _ = b.send(*b.batch)
	}
	*b.batch = (*b.batch)[:0]
	if cap(*b.batch) <= maxBatch { // keep the pool's buffers small
		batchPool.Put(b.batch)
	}
	b.batch = nil
	return b.err
}

// originHosts turns CORS origins into coder/websocket origin patterns.
func originHosts(origins []string) []string {
	var out []string
	for _, o := range origins {
		if u, err := url.Parse(o); err == nil && u.Host != "" {
			out = append(out, u.Scheme+"://"+u.Host)
		}
	}
	return out
}
