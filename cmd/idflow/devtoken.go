package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/idflow/idflow/devidp"
	"github.com/idflow/idflow/internal/devtoken"
)

// cmdDevToken asks a running dev server's issuer for a user's access token,
// through the same authorization-code + PKCE flow a browser uses.
func cmdDevToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := getenv("IDFLOW_PUBLIC_URL")
	if def == "" {
		def = "http://127.0.0.1:8080"
		if l := getenv("IDFLOW_LISTEN"); l != "" {
			def = "http://" + l
		}
	}
	server := fs.String("server", def, "base URL of a server running with --dev")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime")
	resource := fs.String("resource", "", "RFC 8707 resource (audience), e.g. <server>/mcp")
	// Accept the user before or after the flags.
	var login string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		login, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if login == "" && fs.NArg() > 0 {
		login = fs.Arg(0)
	}
	if _, ok := devidp.FindUser(login); !ok {
		return fmt.Errorf("usage: idflow dev-token <alice|bob|carol|admin|platform> [--server URL]")
	}
	tok, err := devToken(ctx, strings.TrimSuffix(*server, "/"), login, *ttl, *resource)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// devToken is login's access token from the dev issuer at server.
func devToken(ctx context.Context, server, login string, ttl time.Duration, resource string) (string, error) {
	return devtoken.Get(ctx, server, login, "dev-token", ttl, resource)
}
