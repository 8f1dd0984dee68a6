// Package metrics is idflow's Prometheus exposition (prometheus/client_golang).
// It holds its own registry — never the global default one — and turns the
// hooks of the other packages (an httpapi.Observer, func fields of auth and
// vault, gauges read on scrape) into metrics.
//
// No metric carries a user id, an email, a token, a client id or a raw
// path: every label value comes from a fixed set (docs/METRICS.md lists
// them), so the number of series is bounded whatever clients send.
package metrics

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/idflow/idflow/httpapi"
	"github.com/idflow/idflow/vault"
)

const namespace = "idflow"

// Metrics is the registry and every idflow metric.
type Metrics struct {
	reg      *prometheus.Registry
	handler  http.Handler
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	jwks     *prometheus.CounterVec
	cache    *prometheus.CounterVec
	runs     *prometheus.CounterVec
	refresh  *prometheus.CounterVec
}

// New returns the metrics on a fresh registry, with Go runtime and process
// metrics. log receives exposition errors.
func New(log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests by route pattern, method, status class, auth method and refusal reason.",
		}, []string{"route", "method", "status", "auth", "refusal"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help:    "HTTP request latency by route pattern, method and status class (a WebSocket: its handshake).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method", "status"}),
		jwks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "jwks", Name: "fetches_total",
			Help: "JWKS fetches by key set (oidc, proxy_assertion) and outcome (ok, error).",
		}, []string{"source", "outcome"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "token_cache", Name: "lookups_total",
			Help: "Lookups in the verified-token cache by result (hit, miss).",
		}, []string{"result"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "runs", Name: "transitions_total",
			Help: "Workflow runs entering each state (queued, running, succeeded, failed, cancelled) in this process.",
		}, []string{"state"}),
		refresh: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "vault", Name: "refreshes_total",
			Help: "Refreshes of downstream credentials sent to providers, by outcome (ok, invalid_grant, error).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.duration, m.jwks, m.cache, m.runs, m.refresh,
	)
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            reg, // promhttp_metric_handler_errors_total
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
	return m
}

// Handler serves the exposition (text format; OpenMetrics is not offered).
func (m *Metrics) Handler() http.Handler { return m.handler }

// Registry is the registry every idflow metric is on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveRequest implements httpapi.Observer.
func (m *Metrics) ObserveRequest(s httpapi.RequestSample) {
	m.requests.WithLabelValues(s.Route, s.Method, s.Status, s.Auth, s.Refusal).Inc()
	m.duration.WithLabelValues(s.Route, s.Method, s.Status).Observe(s.Duration.Seconds())
}

var _ httpapi.Observer = (*Metrics)(nil)

// JWKSFetches returns the observer of one key set's fetches (for
// auth.RemoteKeySet.ObserveFetches); source names the key set.
func (m *Metrics) JWKSFetches(source string) func(err error) {
	ok, failed := m.jwks.WithLabelValues(source, "ok"), m.jwks.WithLabelValues(source, "error")
	return func(err error) {
		if err != nil {
			failed.Inc()
			return
		}
		ok.Inc()
	}
}

// TokenCacheLookups returns the observer of the verified-token cache (for
// auth.VerifierConfig.OnCacheLookup).
func (m *Metrics) TokenCacheLookups() func(hit bool) {
	hits, misses := m.cache.WithLabelValues("hit"), m.cache.WithLabelValues("miss")
	return func(hit bool) {
		if hit {
			hits.Inc()
			return
		}
		misses.Inc()
	}
}

// VaultRefreshes returns the observer of the vault's refreshes (for
// vault.Config.OnRefresh).
func (m *Metrics) VaultRefreshes() func(err error) {
	ok, refused, failed := m.refresh.WithLabelValues("ok"), m.refresh.WithLabelValues("invalid_grant"), m.refresh.WithLabelValues("error")
	return func(err error) {
		switch {
		case err == nil:
			ok.Inc()
		case errors.Is(err, vault.ErrInvalidGrant):
			refused.Inc()
		default:
			failed.Inc()
		}
	}
}

// Gauges read on every scrape.
const (
	GaugeWebSockets    = "websockets_open"   // run WebSockets open on this process
	GaugeMCPSessions   = "mcp_sessions_open" // MCP sessions open on this process
	GaugeRunsExecuting = "runs_executing"    // runs this process is executing now
)

var gaugeHelp = map[string]string{
	GaugeWebSockets:    "Run WebSockets open on this process.",
	GaugeMCPSessions:   "MCP sessions open on this process.",
	GaugeRunsExecuting: "Workflow runs this process is executing now.",
}

// AuditDenialsDropped registers the count of unauthenticated denials that
// were logged but not written to the audit chain (its per-peer budget was
// spent), read from f on every scrape.
func (m *Metrics) AuditDenialsDropped(f func() uint64) error {
	return m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "audit_denials_dropped_total",
		Help: "Unauthenticated denials logged but not audited: their peer's per-minute budget was spent."},
		func() float64 { return float64(f()) }))
}

// Gauge registers one of the Gauge… names, read from f on every scrape. f
// must be cheap and safe for concurrent use.
func (m *Metrics) Gauge(name string, f func() int) error {
	help, ok := gaugeHelp[name]
	if !ok {
		return errors.New("metrics: unknown gauge " + name)
	}
	return m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help},
		func() float64 { return float64(f()) }))
}
