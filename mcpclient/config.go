package mcpclient

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
	"strings"
)

// Auth types of a downstream server. There is no shared-credential type.
const (
	// AuthAssertion: an idflow-signed JWT naming the user, aud = the
	// server's url, verifiable with /.well-known/idflow/jwks.json.
	AuthAssertion = "assertion"
	// AuthConnection: the user's own credential for a provider, from the
	// vault.
	AuthConnection = "connection"
	// AuthExchange: a token for the user from an RFC 8693 / Entra OBO
	// exchange of the user's inbound token.
	AuthExchange = "exchange"
)

// MaxToolName is the longest exposed tool name, <server>__<tool> (the
// function-name limit of the OpenAI API).
const MaxToolName = 64

// maxServers bounds the file: each server costs a session per user.
const maxServers = 64

// maxFileSize bounds what Load reads.
const maxFileSize = 1 << 20

// Config is IDFLOW_MCP_SERVERS_FILE.
type Config struct {
	Servers []Server `json:"servers"`
}

// Server is one downstream MCP server (Streamable HTTP).
type Server struct {
	// Name prefixes its tools: <name>__<tool>. [A-Za-z0-9_-], no "__".
	Name string `json:"name"`
	// URL is the server's MCP endpoint, and the aud of its assertions,
	// exactly as written. https, or http on a loopback host.
	URL  string `json:"url"`
	Auth Auth   `json:"auth"`
	// Groups, when set, limits the server to users in at least one of
	// them; omitted, every user may use it.
	Groups []string `json:"groups,omitempty"`
}

// Auth says which credential of the user a server gets.
type Auth struct {
	Type string `json:"type"`
	// Provider names an IDFLOW_PROVIDERS_FILE provider (connection and
	// exchange only): connectable for connection, an exchange provider
	// for exchange.
	Provider string `json:"provider,omitempty"`
}

// Load reads and validates the servers file.
func Load(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("mcp servers file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("mcp servers file: %w", err)
	}
	if len(b) > maxFileSize {
		return Config{}, fmt.Errorf("mcp servers file %s: larger than %d bytes", path, maxFileSize)
	}
	c, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("mcp servers file %s: %w", path, err)
	}
	return c, nil
}

// Parse parses and validates a servers file: {"servers": [...]}. Unknown
// fields are refused, so a typo cannot silently change who gets what.
func Parse(data []byte) (Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("trailing data after the JSON object")
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	groupRE = regexp.MustCompile(`^\S+$`)
)

// Validate checks every server: names, URLs, auth types, groups.
func (c Config) Validate() error {
	if len(c.Servers) > maxServers {
		return fmt.Errorf("%d servers; at most %d", len(c.Servers), maxServers)
	}
	seen := map[string]bool{}
	for i, s := range c.Servers {
		where := fmt.Sprintf("servers[%d]", i)
		if err := validName(s.Name); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		where = fmt.Sprintf("server %q", s.Name)
		if seen[s.Name] {
			return fmt.Errorf("%s is listed twice", where)
		}
		seen[s.Name] = true
		if err := validURL(s.URL); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		switch s.Auth.Type {
		case AuthAssertion:
			if s.Auth.Provider != "" {
				return fmt.Errorf("%s: auth type assertion takes no provider", where)
			}
		case AuthConnection, AuthExchange:
			if s.Auth.Provider == "" {
				return fmt.Errorf("%s: auth type %s needs a provider (of IDFLOW_PROVIDERS_FILE)", where, s.Auth.Type)
			}
		case "":
			return fmt.Errorf("%s: auth.type is required (assertion, connection or exchange)", where)
		default:
			return fmt.Errorf("%s: auth type %q is not one of assertion, connection, exchange (there is no shared credential)", where, s.Auth.Type)
		}
		if s.Groups != nil && len(s.Groups) == 0 {
			return fmt.Errorf("%s: groups is empty, which would let nobody use it; omit it to let every user", where)
		}
		for _, g := range s.Groups {
			if !groupRE.MatchString(g) {
				return fmt.Errorf("%s: group %q is empty or has spaces", where, g)
			}
		}
	}
	return nil
}

func validName(name string) error {
	switch {
	case !nameRE.MatchString(name):
		return fmt.Errorf("name %q must be letters, digits, '_' or '-'", name)
	case strings.Contains(name, "__"):
		// "__" separates the server from the tool in exposed names.
		return fmt.Errorf("name %q must not contain \"__\"", name)
	case len(name) > MaxToolName-3:
		return fmt.Errorf("name %q is too long: <name>__<tool> must fit in %d characters", name, MaxToolName)
	}
	return nil
}

func validURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("url %q is not an absolute URL without credentials or fragment", raw)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && loopbackHost(u.Hostname())) {
		// The user's credential travels with every request.
		return fmt.Errorf("url %q must be https (http only on a loopback host)", raw)
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

// exposedName is the catalog name of a downstream tool, or false when the
// tool cannot be exposed (invalid characters, or too long).
func exposedName(server, tool string) (string, bool) {
	name := server + "__" + tool
	if tool == "" || len(name) > MaxToolName || !nameRE.MatchString(tool) {
		return "", false
	}
	return name, true
}
