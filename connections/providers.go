package connections

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Exchange kinds of a provider.
const (
	// ExchangeRFC8693 exchanges the caller's inbound token at the token
	// endpoint (grant urn:ietf:params:oauth:grant-type:token-exchange).
	ExchangeRFC8693 = "rfc8693"
	// ExchangeEntraOBO is Microsoft Entra's on-behalf-of flow (grant
	// urn:ietf:params:oauth:grant-type:jwt-bearer, requested_token_use=on_behalf_of).
	ExchangeEntraOBO = "entra_obo"
)

// Client authentication methods at the token endpoint.
const (
	AuthSecretBasic = "client_secret_basic"
	AuthSecretPost  = "client_secret_post"
	AuthNone        = "none"
)

// Provider is one downstream service, as IDFLOW_PROVIDERS_FILE describes it.
type Provider struct {
	// Name is the provider's id in routes (/api/v1/connections/{name}/…)
	// and in tool arguments: lowercase letters, digits, '-' and '_'.
	Name          string `json:"name"`
	AuthorizeURL  string `json:"authorize_url"`
	TokenURL      string `json:"token_url"`
	RevocationURL string `json:"revocation_url"`
	ClientID      string `json:"client_id"`
	// ClientSecret in the file is allowed, ClientSecretEnv (the name of a
	// variable holding it) preferred; never both.
	ClientSecret    string `json:"client_secret"`
	ClientSecretEnv string `json:"client_secret_env"`
	// TokenAuthMethod: client_secret_basic (the default with a secret;
	// client_secret_post for entra_obo), client_secret_post, or none.
	TokenAuthMethod string   `json:"token_auth_method"`
	Scopes          []string `json:"scopes"`
	// AuthorizeParams are added to the authorization request, e.g.
	// {"prompt": "consent"} or Google's {"access_type": "offline"}.
	AuthorizeParams map[string]string `json:"authorize_params"`
	// APIBaseURL is where Downstream.Do sends requests; their paths are
	// resolved under it and can never leave it.
	APIBaseURL string `json:"api_base_url"`
	// Exchange, when set, makes this a token-exchange provider: no connect
	// flow, the caller's inbound token is exchanged on every call.
	Exchange string `json:"exchange"`
	// Audience and Resource are sent with an rfc8693 exchange.
	Audience string `json:"audience"`
	Resource string `json:"resource"`
	// SubjectTokenType of an rfc8693 exchange (default
	// urn:ietf:params:oauth:token-type:access_token).
	SubjectTokenType string `json:"subject_token_type"`

	secret string
	api    *url.URL
}

// String names the provider and nothing secret.
func (p *Provider) String() string { return "provider " + p.Name }

// GoString keeps the secret out of %#v.
func (p *Provider) GoString() string { return p.String() }

// Connectable reports whether users connect to p through the authorization
// code flow (as opposed to a token exchange).
func (p *Provider) Connectable() bool { return p.Exchange == "" }

// authMethod is the effective token endpoint authentication method.
func (p *Provider) authMethod() string {
	switch {
	case p.TokenAuthMethod != "":
		return p.TokenAuthMethod
	case p.secret == "":
		return AuthNone
	case p.Exchange == ExchangeEntraOBO:
		return AuthSecretPost
	}
	return AuthSecretBasic
}

// Registry holds the configured providers.
type Registry struct {
	byName map[string]*Provider
	names  []string
}

type providersFile struct {
	Providers []Provider `json:"providers"`
}

// LoadProviders reads IDFLOW_PROVIDERS_FILE. getenv resolves
// client_secret_env.
func LoadProviders(path string, getenv func(string) string) (*Registry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("providers file: %w", err)
	}
	r, err := ParseProviders(b, getenv)
	if err != nil {
		return nil, fmt.Errorf("providers file %s: %w", path, err)
	}
	return r, nil
}

// ParseProviders parses a providers file: {"providers": [...]}. Unknown
// fields are refused, so a typo cannot silently change a provider.
func ParseProviders(data []byte, getenv func(string) string) (*Registry, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f providersFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON object")
	}
	return NewRegistry(f.Providers, getenv)
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// reservedParams are set by the connect flow itself.
var reservedParams = []string{"client_id", "redirect_uri", "response_type", "scope", "state",
	"code_challenge", "code_challenge_method", "client_secret"}

// NewRegistry validates providers. getenv resolves client_secret_env.
func NewRegistry(providers []Provider, getenv func(string) string) (*Registry, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	r := &Registry{byName: map[string]*Provider{}}
	for i := range providers {
		p := providers[i]
		where := fmt.Sprintf("providers[%d]", i)
		if !nameRE.MatchString(p.Name) {
			return nil, fmt.Errorf("%s: name %q must be 1-63 lowercase letters, digits, '-' or '_'", where, p.Name)
		}
		where = fmt.Sprintf("provider %q", p.Name)
		if _, dup := r.byName[p.Name]; dup {
			return nil, fmt.Errorf("%s is listed twice", where)
		}
		if err := p.validate(getenv); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		r.byName[p.Name] = &p
		r.names = append(r.names, p.Name)
	}
	sort.Strings(r.names)
	return r, nil
}

func (p *Provider) validate(getenv func(string) string) error {
	switch p.Exchange {
	case "", ExchangeRFC8693, ExchangeEntraOBO:
	default:
		return fmt.Errorf("exchange %q is not one of rfc8693, entra_obo", p.Exchange)
	}
	if p.ClientID == "" {
		return errors.New("client_id is required")
	}
	switch {
	case p.ClientSecret != "" && p.ClientSecretEnv != "":
		return errors.New("set client_secret or client_secret_env, not both")
	case p.ClientSecretEnv != "":
		p.secret = getenv(p.ClientSecretEnv)
		if p.secret == "" {
			return fmt.Errorf("client_secret_env names %s, which is empty", p.ClientSecretEnv)
		}
	default:
		p.secret = p.ClientSecret
	}
	p.ClientSecret = "" // kept only in the unexported field
	switch p.TokenAuthMethod {
	case "", AuthNone:
	case AuthSecretBasic, AuthSecretPost:
		if p.secret == "" {
			return fmt.Errorf("token_auth_method %s needs a client secret", p.TokenAuthMethod)
		}
	default:
		return fmt.Errorf("token_auth_method %q is not one of client_secret_basic, client_secret_post, none", p.TokenAuthMethod)
	}
	check := func(field, v string, required bool) (*url.URL, error) {
		if v == "" {
			if required {
				return nil, fmt.Errorf("%s is required", field)
			}
			return nil, nil
		}
		u, err := url.Parse(v)
		if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
			return nil, fmt.Errorf("%s %q is not an absolute URL without credentials or fragment", field, v)
		}
		if u.Scheme != "https" && !(u.Scheme == "http" && loopbackHost(u.Hostname())) {
			return nil, fmt.Errorf("%s must be https (http only on loopback)", field)
		}
		return u, nil
	}
	if _, err := check("token_url", p.TokenURL, true); err != nil {
		return err
	}
	if _, err := check("authorize_url", p.AuthorizeURL, p.Exchange == ""); err != nil {
		return err
	}
	if _, err := check("revocation_url", p.RevocationURL, false); err != nil {
		return err
	}
	api, err := check("api_base_url", p.APIBaseURL, true)
	if err != nil {
		return err
	}
	if api.RawQuery != "" {
		return errors.New("api_base_url must not have a query")
	}
	api.Path = strings.TrimSuffix(api.Path, "/")
	api.RawPath = ""
	p.api = api
	for k := range p.AuthorizeParams {
		if slices.Contains(reservedParams, k) {
			return fmt.Errorf("authorize_params may not set %s", k)
		}
	}
	if p.Exchange == "" && (p.Audience != "" || p.Resource != "" || p.SubjectTokenType != "") {
		return errors.New("audience, resource and subject_token_type apply to exchange providers only")
	}
	if p.Exchange == ExchangeEntraOBO {
		if len(p.Scopes) == 0 {
			return errors.New("entra_obo needs scopes (e.g. https://graph.microsoft.com/.default)")
		}
		if p.secret == "" {
			return errors.New("entra_obo needs a client secret")
		}
	}
	if p.Scopes == nil {
		p.Scopes = []string{}
	}
	return nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Get returns the provider named name.
func (r *Registry) Get(name string) (*Provider, bool) {
	if r == nil {
		return nil, false
	}
	p, ok := r.byName[name]
	return p, ok
}

// Names lists the providers, sorted.
func (r *Registry) Names() []string {
	if r == nil {
		return nil
	}
	return slices.Clone(r.names)
}

// Len is the number of providers.
func (r *Registry) Len() int {
	if r == nil {
		return 0
	}
	return len(r.names)
}
