package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/budget"
	"github.com/idflow/idflow/devidp"
	"github.com/idflow/idflow/ratelimit"
	"github.com/idflow/idflow/runner"
	"github.com/idflow/idflow/service"
)

// config is every setting of `idflow serve`. Each field has an environment
// variable (docs/CONFIGURATION.md) and a flag of the same name; the flag wins.
type config struct {
	Dev                        bool
	Listen                     string
	PublicURL                  string
	DataDir                    string
	DatabaseURL                string
	MigrateDatabaseURL         string
	CacheURL                   string
	OIDCIssuer                 string
	OIDCAudience               string
	OIDCUserClaim              string
	InsecureOIDCAcceptIDTokens bool
	OIDCTenants                string
	OIDCRequiredScope          string
	OIDCClientID               string
	OIDCClientSecret           string
	AdminRole                  string
	PlatformAdminRole          string
	InternalClients            string
	InternalRole               string
	SCIMClients                string
	TrustedProxies             string
	ProxyUserHeader            string
	ProxyAssertionHeader       string
	ProxyAssertionJWKSURL      string
	ProxyAssertionIssuer       string
	ProxyAssertionAudience     string
	InsecureWSQueryToken       bool
	VaultKey                   string
	LLMURL                     string
	LLMAPIKey                  string
	LLMModel                   string
	LLMTimeout                 string
	LLMMaxRetries              string
	CORSOrigins                string
	AssertionKey               string
	LogLevel                   string
	RunTimeout                 string
	WSMaxPerUser               string
	RunsPerUser                string
	ProvidersFile              string
	PolicyFile                 string
	MCPToolScopes              string
	MCPScopes                  string
	MetricsListen              string
	MCPMaxSessionsPerUser      string
	MCPSessionIdleTimeout      string
	BodyTimeout                string
	MaxBodiesPerPeer           string
	MCPServersFile             string
	AgentMaxSteps              string
	AgentMemoryK               string
	AgentHistoryTokens         string
	AgentTurnTimeout           string
	AllowVerify                string
	RateLimits                 string
	RateLimitWait              string
	TurnsPerUser               string
	StreamsPerUser             string
	IngestBytesPerUser         string
	ModelBudget                string
	MCPAuth                    string
	MCPCIMDCAFile              string
	InsecureMCPCIMDPrivate     bool

	runTimeout   time.Duration
	wsMaxPerUser int
	runsPerUser  int
	bodyTimeout  time.Duration
	peerBodies   int
	getenv       func(string) string // the process environment (e.g. providers' client_secret_env)

	mcpMaxSessions int
	mcpIdleTimeout time.Duration

	llmTimeout                                      time.Duration
	llmMaxRetries                                   int
	agentMaxSteps, agentMemoryK, agentHistoryTokens int
	agentTurnTimeout                                time.Duration
	rateLimitWait                                   time.Duration
	allowVerify                                     bool // IDFLOW_ALLOW_VERIFY: /readyz invites `idflow verify`

	rateLimits                                ratelimit.Limits
	turnsPerUser, streamsPerUser, ingestBytes int
	modelBudget                               budget.Limits
}

type setting struct {
	env, flag, def, help string
	str                  *string
	boolean              *bool
}

func (c *config) settings() []setting {
	s := func(env, fl, def, help string, p *string) setting {
		return setting{env: env, flag: fl, def: def, help: help, str: p}
	}
	b := func(env, fl, help string, p *bool) setting {
		return setting{env: env, flag: fl, def: "false", help: help, boolean: p}
	}
	return []setting{
		s("IDFLOW_LISTEN", "listen", "127.0.0.1:8080", "listen address", &c.Listen),
		s("IDFLOW_PUBLIC_URL", "public-url", "", "external base URL (default http://<listen>)", &c.PublicURL),
		s("IDFLOW_DATA_DIR", "data-dir", "./data", "embedded data: SQLite, files, keys", &c.DataDir),
		s("IDFLOW_DATABASE_URL", "database-url", "", "sqlite:///path or postgres://… (default SQLite in the data dir)", &c.DatabaseURL),
		s("IDFLOW_MIGRATE_DATABASE_URL", "migrate-database-url", "", "PostgreSQL role that owns the schema (default: database-url)", &c.MigrateDatabaseURL),
		s("IDFLOW_CACHE_URL", "cache-url", "memory://", "memory://, redis://…, memcached://host:port", &c.CacheURL),
		s("IDFLOW_OIDC_ISSUER", "oidc-issuer", "", "OpenID issuer; more accepted issuers may follow, comma-separated", &c.OIDCIssuer),
		s("IDFLOW_OIDC_AUDIENCE", "oidc-audience", "", "accepted audiences, comma-separated", &c.OIDCAudience),
		s("IDFLOW_OIDC_USER_CLAIM", "oidc-user-claim", "", "claims tried in order for the user id (default: oid for Entra ID issuers, sub for others; email, preferred_username, upn, name, unique_name are refused)", &c.OIDCUserClaim),
		b("IDFLOW_OIDC_ACCEPT_ID_TOKENS", "oidc-accept-id-tokens", "accept OpenID Connect ID tokens as bearer tokens (weaker: for SPAs that cannot get an access token)", &c.InsecureOIDCAcceptIDTokens),
		s("IDFLOW_OIDC_TENANTS", "oidc-tenants", "", "allowed tid values, comma-separated", &c.OIDCTenants),
		s("IDFLOW_OIDC_REQUIRED_SCOPE", "oidc-required-scope", "", "delegated scope user tokens must carry", &c.OIDCRequiredScope),
		s("IDFLOW_OIDC_CLIENT_ID", "oidc-client-id", "", "client id for the browser login", &c.OIDCClientID),
		s("IDFLOW_OIDC_CLIENT_SECRET", "oidc-client-secret", "", "client secret for the browser login (prefer the variable)", &c.OIDCClientSecret),
		s("IDFLOW_ADMIN_ROLE", "admin-role", "admin", "role that opens /api/v1/admin/*, for the admin's own tenant only", &c.AdminRole),
		s("IDFLOW_PLATFORM_ADMIN_ROLE", "platform-admin-role", "", "role that administers every tenant, audited as such (default none; in --dev "+devidp.PlatformAdminRole+")", &c.PlatformAdminRole),
		s("IDFLOW_INTERNAL_CLIENTS", "internal-clients", "", "app-only client ids allowed on /internal/v1/*", &c.InternalClients),
		s("IDFLOW_INTERNAL_ROLE", "internal-role", "", "app role also required on /internal/v1/*", &c.InternalRole),
		s("IDFLOW_SCIM_CLIENTS", "scim-clients", "", "app-only client ids that provision users and groups over /scim/v2, each its own token's tenant", &c.SCIMClients),
		s("IDFLOW_TRUSTED_PROXIES", "trusted-proxies", "", "CIDRs whose identity headers count", &c.TrustedProxies),
		s("IDFLOW_PROXY_USER_HEADER", "proxy-user-header", "X-Authenticated-User", "plain identity header of a trusted proxy", &c.ProxyUserHeader),
		s("IDFLOW_PROXY_ASSERTION_HEADER", "proxy-assertion-header", "", "signed identity header of a trusted proxy", &c.ProxyAssertionHeader),
		s("IDFLOW_PROXY_ASSERTION_JWKS_URL", "proxy-assertion-jwks-url", "", "JWKS that signs the assertion header", &c.ProxyAssertionJWKSURL),
		s("IDFLOW_PROXY_ASSERTION_ISSUER", "proxy-assertion-issuer", "", "iss of the assertion (default: the JWKS URL's origin)", &c.ProxyAssertionIssuer),
		s("IDFLOW_PROXY_ASSERTION_AUDIENCE", "proxy-assertion-audience", "", "aud of the assertion (default: the public URL)", &c.ProxyAssertionAudience),
		b("IDFLOW_WS_QUERY_TOKEN", "ws-query-token", "allow ?access_token= on WebSockets", &c.InsecureWSQueryToken),
		s("IDFLOW_VAULT_KEY", "vault-key", "", "base64 32-byte keys, comma-separated; the first seals (prefer the variable)", &c.VaultKey),
		s("IDFLOW_LLM_URL", "llm-url", "", "OpenAI-compatible base URL (default: the built-in echo model)", &c.LLMURL),
		s("IDFLOW_LLM_API_KEY", "llm-api-key", "", "API key of the model (prefer the variable)", &c.LLMAPIKey),
		s("IDFLOW_LLM_MODEL", "llm-model", "", "model name", &c.LLMModel),
		s("IDFLOW_LLM_TIMEOUT", "llm-timeout", "2m", "longest one request to the model may take, its streamed answer included", &c.LLMTimeout),
		s("IDFLOW_LLM_MAX_RETRIES", "llm-max-retries", "2", "retries of a model request on 429, 5xx or a connection error, with backoff (never once the answer began)", &c.LLMMaxRetries),
		s("IDFLOW_CORS_ORIGINS", "cors-origins", "", "origins allowed by CORS, comma-separated", &c.CORSOrigins),
		s("IDFLOW_ASSERTION_KEY", "assertion-key", "", "PKCS#8 EC key signing X-Idflow-Assertion (default: a key in the data dir)", &c.AssertionKey),
		s("IDFLOW_PROVIDERS_FILE", "providers-file", "", "downstream OAuth providers (JSON)", &c.ProvidersFile),
		s("IDFLOW_POLICY_FILE", "policy-file", "", "group/role → feature policy (JSON)", &c.PolicyFile),
		s("IDFLOW_MCP_TOOL_SCOPES", "mcp-tool-scopes", "", "scopes MCP tools need: tool:scope pairs, comma-separated (* = every tool)", &c.MCPToolScopes),
		s("IDFLOW_MCP_SCOPES", "mcp-scopes", "", "scopes advertised to MCP clients (metadata, 401 challenge); default the required scope, in --dev idflow", &c.MCPScopes),
		s("IDFLOW_MCP_MAX_SESSIONS_PER_USER", "mcp-max-sessions-per-user", "20", "MCP sessions per user, and open MCP event streams per user; a new session beyond it closes the user's least recently used idle one", &c.MCPMaxSessionsPerUser),
		s("IDFLOW_MCP_SESSION_IDLE_TIMEOUT", "mcp-session-idle-timeout", "30m", "an MCP session without a request for this long is closed", &c.MCPSessionIdleTimeout),
		s("IDFLOW_MCP_SERVERS_FILE", "mcp-servers-file", "", "downstream MCP servers whose tools idflow offers as <server>__<tool> (JSON)", &c.MCPServersFile),
		s("IDFLOW_LOG_LEVEL", "log-level", "info", "debug, info, warn, error", &c.LogLevel),
		s("IDFLOW_RUN_TIMEOUT", "run-timeout", "5m", "longest a workflow run may take", &c.RunTimeout),
		s("IDFLOW_WS_MAX_PER_USER", "ws-max-per-user", "50", "open WebSockets per user", &c.WSMaxPerUser),
		s("IDFLOW_METRICS_LISTEN", "metrics-listen", "", "address serving /metrics without a token (loopback or a pod-internal port); default: only on the API, to allowlisted app-only tokens", &c.MetricsListen),
		s("IDFLOW_RUNS_PER_USER", "runs-per-user", strconv.Itoa(runner.DefaultRunsPerUser), "runs of one user executing at once; the rest wait in order", &c.RunsPerUser),
		s("IDFLOW_BODY_TIMEOUT", "body-timeout", "30s", "longest a 1 MiB request body may take to arrive (uploads: in proportion)", &c.BodyTimeout),
		s("IDFLOW_MAX_BODIES_PER_PEER", "max-bodies-per-peer", "8", "request bodies one client address may send at once", &c.MaxBodiesPerPeer),
		s("IDFLOW_AGENT_MAX_STEPS", "agent-max-steps", strconv.Itoa(service.DefaultAgentMaxSteps), "model calls per agent turn (1-64)", &c.AgentMaxSteps),
		s("IDFLOW_AGENT_MEMORY_K", "agent-memory-k", strconv.Itoa(service.DefaultAgentMemoryK), "the caller's matching facts given to the model per turn (0-50; 0: none)", &c.AgentMemoryK),
		s("IDFLOW_AGENT_HISTORY_TOKENS", "agent-history-tokens", strconv.Itoa(service.DefaultAgentHistoryTokens), "estimated tokens of a session's history sent per turn (0: none)", &c.AgentHistoryTokens),
		s("IDFLOW_AGENT_TURN_TIMEOUT", "agent-turn-timeout", service.DefaultAgentTurnTimeout.String(), "longest an agent turn (model calls and tools) may take", &c.AgentTurnTimeout),
		s("IDFLOW_MCP_AUTH", "mcp-auth", "", "who issues /mcp's tokens: idflow (its own authorization server: clients register or name a metadata document, users sign in through the browser login and consent) or upstream (the OpenID issuer's tokens only); default upstream, idflow in --dev", &c.MCPAuth),
		s("IDFLOW_MCP_CIMD_CA_FILE", "mcp-cimd-ca-file", "", "PEM roots trusted, besides the system's, when fetching MCP clients' Client ID Metadata Documents", &c.MCPCIMDCAFile),
		b("IDFLOW_INSECURE_MCP_CIMD_PRIVATE", "insecure-mcp-cimd-private", "fetch Client ID Metadata Documents from loopback and private addresses too (always so in --dev)", &c.InsecureMCPCIMDPrivate),
		s("IDFLOW_ALLOW_VERIFY", "allow-verify", "", "let `idflow verify` run against this server (it creates and removes test objects as the users whose tokens it is given): true or false; default false, true in --dev", &c.AllowVerify),
		s("IDFLOW_RATE_LIMITS", "rate-limits", "", "request rate limits per user and route class over the defaults, e.g. read=50/s:burst=100,write=10/s,turn=20/m,ingest=off (docs/LIMITS.md)", &c.RateLimits),
		s("IDFLOW_RATE_LIMIT_WAIT", "rate-limit-wait", "1s", "longest a request over its rate limit waits for its turn before it is refused with 429 (at most 16 of a user's wait at once; 0: refused at once; docs/LIMITS.md)", &c.RateLimitWait),
		s("IDFLOW_TURNS_PER_USER", "turns-per-user", "4", "agent turns one user may have in progress at once", &c.TurnsPerUser),
		s("IDFLOW_STREAMS_PER_USER", "streams-per-user", "8", "event streams (streamed agent turns) one user may have open at once", &c.StreamsPerUser),
		s("IDFLOW_MODEL_BUDGET", "model-budget", "", "model token budgets, e.g. user.day=200k,user.month=3M,tenant.day=5M,tenant.month=100M (default none; docs/LIMITS.md)", &c.ModelBudget),
		s("IDFLOW_INGEST_BYTES_PER_USER", "ingest-bytes-per-user", "33554432", "bytes of document ingests one user may have in progress at once (one ingest alone always proceeds)", &c.IngestBytesPerUser),
	}
}

// loadConfig reads the environment, then flags.
func loadConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (*config, *flag.FlagSet, error) {
	c := &config{getenv: getenv}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&c.Dev, "dev", false, "the embedded default: SQLite, memory cache, a built-in dev issuer, loopback only")
	for _, st := range c.settings() {
		v := getenv(st.env)
		if v == "" {
			v = st.def
		}
		help := st.help + " [" + st.env + "]"
		if st.boolean != nil {
			bv, err := strconv.ParseBool(v)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", st.env, err)
			}
			fs.BoolVar(st.boolean, st.flag, bv, help)
			continue
		}
		fs.StringVar(st.str, st.flag, v, help)
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.Listen
	}
	c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	if _, err := url.Parse(c.PublicURL); err != nil {
		return nil, nil, fmt.Errorf("IDFLOW_PUBLIC_URL: %w", err)
	}
	var err error
	if c.runTimeout, err = time.ParseDuration(c.RunTimeout); err != nil || c.runTimeout <= 0 {
		return nil, nil, fmt.Errorf("IDFLOW_RUN_TIMEOUT: %q is not a positive duration", c.RunTimeout)
	}
	if c.wsMaxPerUser, err = strconv.Atoi(c.WSMaxPerUser); err != nil || c.wsMaxPerUser < 1 {
		return nil, nil, fmt.Errorf("IDFLOW_WS_MAX_PER_USER: %q is not a positive integer", c.WSMaxPerUser)
	}
	if c.runsPerUser, err = strconv.Atoi(c.RunsPerUser); err != nil || c.runsPerUser < 1 || c.runsPerUser > 1000 {
		return nil, nil, fmt.Errorf("IDFLOW_RUNS_PER_USER: %q is not an integer from 1 to 1000", c.RunsPerUser)
	}
	if c.mcpMaxSessions, err = strconv.Atoi(c.MCPMaxSessionsPerUser); err != nil || c.mcpMaxSessions < 1 {
		return nil, nil, fmt.Errorf("IDFLOW_MCP_MAX_SESSIONS_PER_USER: %q is not a positive integer", c.MCPMaxSessionsPerUser)
	}
	if c.mcpIdleTimeout, err = time.ParseDuration(c.MCPSessionIdleTimeout); err != nil || c.mcpIdleTimeout <= 0 {
		return nil, nil, fmt.Errorf("IDFLOW_MCP_SESSION_IDLE_TIMEOUT: %q is not a positive duration", c.MCPSessionIdleTimeout)
	}
	if c.bodyTimeout, err = time.ParseDuration(c.BodyTimeout); err != nil || c.bodyTimeout <= 0 {
		return nil, nil, fmt.Errorf("IDFLOW_BODY_TIMEOUT: %q is not a positive duration", c.BodyTimeout)
	}
	if c.peerBodies, err = strconv.Atoi(c.MaxBodiesPerPeer); err != nil || c.peerBodies < 1 {
		return nil, nil, fmt.Errorf("IDFLOW_MAX_BODIES_PER_PEER: %q is not a positive integer", c.MaxBodiesPerPeer)
	}
	if c.llmTimeout, err = time.ParseDuration(c.LLMTimeout); err != nil || c.llmTimeout <= 0 {
		return nil, nil, fmt.Errorf("IDFLOW_LLM_TIMEOUT: %q is not a positive duration", c.LLMTimeout)
	}
	if c.llmMaxRetries, err = strconv.Atoi(c.LLMMaxRetries); err != nil || c.llmMaxRetries < 0 || c.llmMaxRetries > 10 {
		return nil, nil, fmt.Errorf("IDFLOW_LLM_MAX_RETRIES: %q is not an integer from 0 to 10", c.LLMMaxRetries)
	}
	if c.agentMaxSteps, err = strconv.Atoi(c.AgentMaxSteps); err != nil || c.agentMaxSteps < 1 || c.agentMaxSteps > 64 {
		return nil, nil, fmt.Errorf("IDFLOW_AGENT_MAX_STEPS: %q is not an integer from 1 to 64", c.AgentMaxSteps)
	}
	if c.agentMemoryK, err = strconv.Atoi(c.AgentMemoryK); err != nil || c.agentMemoryK < 0 || c.agentMemoryK > service.MaxAgentMemoryK {
		return nil, nil, fmt.Errorf("IDFLOW_AGENT_MEMORY_K: %q is not an integer from 0 to %d", c.AgentMemoryK, service.MaxAgentMemoryK)
	}
	if c.agentHistoryTokens, err = strconv.Atoi(c.AgentHistoryTokens); err != nil || c.agentHistoryTokens < 0 || c.agentHistoryTokens > 1_000_000 {
		return nil, nil, fmt.Errorf("IDFLOW_AGENT_HISTORY_TOKENS: %q is not an integer from 0 to 1000000", c.AgentHistoryTokens)
	}
	if c.agentTurnTimeout, err = time.ParseDuration(c.AgentTurnTimeout); err != nil || c.agentTurnTimeout <= 0 {
		return nil, nil, fmt.Errorf("IDFLOW_AGENT_TURN_TIMEOUT: %q is not a positive duration", c.AgentTurnTimeout)
	}
	// Verification is off unless asked for; the loopback-only dev mode
	// invites it unless told otherwise (docs/VERIFY.md).
	c.allowVerify = c.Dev
	if c.AllowVerify != "" {
		if c.allowVerify, err = strconv.ParseBool(c.AllowVerify); err != nil {
			return nil, nil, fmt.Errorf("IDFLOW_ALLOW_VERIFY: %q is not true or false", c.AllowVerify)
		}
	}
	if c.rateLimitWait, err = time.ParseDuration(c.RateLimitWait); err != nil || c.rateLimitWait < 0 || c.rateLimitWait > time.Minute {
		return nil, nil, fmt.Errorf("IDFLOW_RATE_LIMIT_WAIT: %q is not a duration from 0 to 1m", c.RateLimitWait)
	}
	if c.rateLimits, err = ratelimit.Parse(c.RateLimits); err != nil {
		return nil, nil, fmt.Errorf("IDFLOW_RATE_LIMITS: %w", err)
	}
	if c.modelBudget, err = budget.Parse(c.ModelBudget); err != nil {
		return nil, nil, fmt.Errorf("IDFLOW_MODEL_BUDGET: %w", err)
	}
	if c.turnsPerUser, err = strconv.Atoi(c.TurnsPerUser); err != nil || c.turnsPerUser < 1 || c.turnsPerUser > 1000 {
		return nil, nil, fmt.Errorf("IDFLOW_TURNS_PER_USER: %q is not an integer from 1 to 1000", c.TurnsPerUser)
	}
	if c.streamsPerUser, err = strconv.Atoi(c.StreamsPerUser); err != nil || c.streamsPerUser < 1 || c.streamsPerUser > 1000 {
		return nil, nil, fmt.Errorf("IDFLOW_STREAMS_PER_USER: %q is not an integer from 1 to 1000", c.StreamsPerUser)
	}
	if c.ingestBytes, err = strconv.Atoi(c.IngestBytesPerUser); err != nil || c.ingestBytes < 1 {
		return nil, nil, fmt.Errorf("IDFLOW_INGEST_BYTES_PER_USER: %q is not a positive integer", c.IngestBytesPerUser)
	}
	return c, fs, nil
}

// validate refuses configurations that would fail open.
func (c *config) validate() error {
	for _, claim := range splitComma(c.OIDCUserClaim) {
		if auth.MutableClaim(claim) {
			return fmt.Errorf("IDFLOW_OIDC_USER_CLAIM: %q can change or be reassigned to another user, so it cannot be the user id; use oid (Entra ID) or sub, or leave it unset", claim)
		}
	}
	if c.InsecureOIDCAcceptIDTokens && c.OIDCRequiredScope != "" {
		return errors.New("IDFLOW_OIDC_ACCEPT_ID_TOKENS: ID tokens carry no scope, so with IDFLOW_OIDC_REQUIRED_SCOPE none would be accepted; set one or the other")
	}
	if c.PlatformAdminRole != "" && c.PlatformAdminRole == c.AdminRole {
		return errors.New("IDFLOW_PLATFORM_ADMIN_ROLE must differ from IDFLOW_ADMIN_ROLE: every tenant's admin would administer every tenant")
	}
	if c.MCPAuth != "" && c.MCPAuth != "idflow" && c.MCPAuth != "upstream" {
		return fmt.Errorf("IDFLOW_MCP_AUTH: %q is neither idflow nor upstream", c.MCPAuth)
	}
	if c.Dev {
		if !loopback(c.Listen) {
			return fmt.Errorf("--dev listens on loopback only; %q is not a loopback address", c.Listen)
		}
		if c.OIDCIssuer != "" {
			return errors.New("--dev uses its own dev issuer; unset IDFLOW_OIDC_ISSUER or drop --dev")
		}
		if c.TrustedProxies != "" {
			return errors.New("--dev does not trust proxies; unset IDFLOW_TRUSTED_PROXIES or drop --dev")
		}
		if c.MetricsListen != "" && !loopback(c.MetricsListen) {
			return fmt.Errorf("--dev listens on loopback only; IDFLOW_METRICS_LISTEN %q is not a loopback address", c.MetricsListen)
		}
		return nil
	}
	if c.OIDCIssuer != "" && c.OIDCAudience == "" {
		return errors.New("IDFLOW_OIDC_AUDIENCE is required when IDFLOW_OIDC_ISSUER is set")
	}
	if c.OIDCIssuer == "" && c.TrustedProxies == "" {
		return errors.New("no authentication configured: set IDFLOW_OIDC_ISSUER and IDFLOW_OIDC_AUDIENCE, or IDFLOW_TRUSTED_PROXIES, or run with --dev")
	}
	if c.ProxyAssertionHeader != "" && c.ProxyAssertionJWKSURL == "" {
		return errors.New("IDFLOW_PROXY_ASSERTION_HEADER needs IDFLOW_PROXY_ASSERTION_JWKS_URL")
	}
	return nil
}

// mcpAuth is who issues /mcp's tokens: "idflow" or "upstream".
func (c *config) mcpAuth() string {
	if c.MCPAuth == "" && c.Dev {
		return "idflow"
	}
	if c.MCPAuth == "" {
		return "upstream"
	}
	return c.MCPAuth
}

// platformAdminRole is the role that administers every tenant: the
// configured one; in dev mode, when none is, the dev issuer's (its user
// "platform" holds it).
func (c *config) platformAdminRole() string {
	if c.PlatformAdminRole == "" && c.Dev {
		return devidp.PlatformAdminRole
	}
	return c.PlatformAdminRole
}

// loopback reports whether addr's host is a loopback address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func splitComma(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
