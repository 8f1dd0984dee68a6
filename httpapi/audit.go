package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/web"
)

// auditor writes the HTTP layer's own audit rows: refused requests and
// browser sign-ins and sign-outs. Everything else is audited by the service.
type auditor struct {
	store   auditRecorder // nil: rows are only logged
	log     *slog.Logger
	denials *denialLimiter // unauthenticated denials audited per peer and reason
}

type auditRecorder interface {
	RecordAudit(ctx context.Context, e idflow.AuditEvent) (idflow.AuditEvent, error)
}

// denial records a refused request. p is nil when nobody was
// authenticated; such a denial goes through anonymous.
func (a *auditor) denial(r *http.Request, p *idflow.Principal, action, reason string) {
	if p == nil {
		a.anonymous(r, action, action, reason)
		return
	}
	a.log.WarnContext(r.Context(), "denied", "action", action, "reason", reason,
		"user_id", p.UserID, "path", r.URL.Path, "peer", r.RemoteAddr, "request_id", requestID(r.Context()))
	a.record(r, idflow.AuditEvent{UserID: p.UserID, TenantID: p.TenantID, Action: action,
		Resource: r.Method + " " + r.URL.Path, Detail: reason})
}

// anonymous records a denial without a verified caller: a junk token,
// a forged identity header, a missing CSRF token, a failed sign-in. Anyone
// can send those, as fast as they like, so each is logged but audited at
// most Config.AuditDenialsPerMinute times a minute per (peer address,
// action, class); class must come from a small fixed set, never from the
// request. The row names the route's pattern, not the path the client
// chose, and the next row of a key says how many like it were dropped.
func (a *auditor) anonymous(r *http.Request, action, class, detail string) {
	ok, dropped := a.denials.admit(denialKey{peer: peerHost(r), action: action, class: class})
	a.log.WarnContext(r.Context(), "denied", "action", action, "reason", detail, "path", r.URL.Path,
		"peer", r.RemoteAddr, "request_id", requestID(r.Context()), "audited", ok)
	if !ok {
		return
	}
	if dropped > 0 {
		detail = fmt.Sprintf("%s (and %d more like it from this peer not audited)", detail, dropped)
	}
	resource := r.Pattern // the route, e.g. /api/v1/apps/{app_id}; never longer than the route table
	if resource == "" {
		resource = r.URL.Path // bounded by AuditEvent.Bounded
	}
	a.record(r, idflow.AuditEvent{Action: action, Resource: r.Method + " " + resource, Detail: detail})
}

// account records a browser sign-in or sign-out (a zero Account, when
// no session was ended, records nothing).
func (a *auditor) account(r *http.Request, action string, acct web.Account) {
	if a.store == nil || acct.UserID == "" {
		return
	}
	_, err := a.store.RecordAudit(context.WithoutCancel(r.Context()), idflow.AuditEvent{
		UserID: acct.UserID, TenantID: acct.TenantID, Action: action, Resource: "browser session",
		Outcome: idflow.OutcomeSuccess, RequestID: requestID(r.Context()), Peer: r.RemoteAddr,
	})
	if err != nil {
		a.log.ErrorContext(r.Context(), "audit write failed", "action", action, "err", err)
	}
}

// record writes a denial.
func (a *auditor) record(r *http.Request, e idflow.AuditEvent) {
	if a.store == nil {
		return
	}
	e.Outcome, e.RequestID, e.Peer = idflow.OutcomeDenied, requestID(r.Context()), r.RemoteAddr
	if _, err := a.store.RecordAudit(r.Context(), e); err != nil {
		a.log.ErrorContext(r.Context(), "audit write failed", "err", err)
	}
}

// AuditDenialsDropped is how many unauthenticated denials were logged but
// not audited since the server started (for metrics).
func (s *Server) AuditDenialsDropped() uint64 { return s.audit.denials.dropped.Load() }

// peerHost names the client behind a TCP peer for per-peer limits: its
// address without the port (one client opens many connections), and for
// IPv6 its /64 (one client commonly holds the whole prefix).
func peerHost(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	addr := ap.Addr().Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}

// Bounds of the denial limiter.
const (
	maxDenialKeys    = 10000           // keys remembered at once
	denialWindow     = time.Minute     // a key's window
	denialSweepEvery = 5 * time.Second // full map: look for expired keys at most this often
)

// denialLimiter admits at most perWindow rows per key in fixed one-minute
// windows. It remembers at most maxDenialKeys keys: a flood of new keys
// (many addresses) finds the map full and is dropped, never audited
// unbounded, and never costs more than one sweep every few seconds.
type denialLimiter struct {
	now       func() time.Time
	perWindow int
	log       *slog.Logger

	mu        sync.Mutex
	keys      map[denialKey]*denialCount
	lastSweep time.Time
	dropped   atomic.Uint64
}

type denialKey struct{ peer, action, class string }

type denialCount struct {
	start   time.Time // of the current window
	rows    int       // audited in the current window
	dropped int       // not audited since the key's last row
}

// admit reports whether a denial of key is audited now and, if it is, how
// many of key's denials were dropped since its last row.
func (l *denialLimiter) admit(key denialKey) (ok bool, dropped int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.keys[key]
	if c == nil {
		if len(l.keys) >= maxDenialKeys && now.Sub(l.lastSweep) >= denialSweepEvery {
			l.sweep(now)
		}
		if len(l.keys) >= maxDenialKeys {
			l.dropped.Add(1)
			return false, 0
		}
		c = &denialCount{start: now}
		l.keys[key] = c
	}
	if now.Sub(c.start) >= denialWindow {
		c.start, c.rows = now, 0
	}
	if c.rows >= l.perWindow {
		c.dropped++
		l.dropped.Add(1)
		return false, 0
	}
	c.rows++
	dropped, c.dropped = c.dropped, 0
	return true, dropped
}

// sweep forgets keys whose window has ended; the denials they dropped are
// logged, since no later row will report them.
func (l *denialLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, c := range l.keys {
		if now.Sub(c.start) < denialWindow {
			continue
		}
		if c.dropped > 0 {
			l.log.Warn("unauthenticated denials not audited", "peer", k.peer, "action", k.action,
				"class", k.class, "dropped", c.dropped)
		}
		delete(l.keys, k)
	}
}
