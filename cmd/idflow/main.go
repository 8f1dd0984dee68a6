// Command idflow is the identity-first backend for multi-user AI agent apps.
// It is the only place where idflow's parts are wired together.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "idflow:", err)
		os.Exit(1)
	}
}

const usage = `usage: idflow <command> [flags]

commands:
  serve       run the server (serve --dev: the embedded default with a dev issuer)
  migrate     apply database migrations and exit
  dev-token   print a bearer token for a dev user: idflow dev-token alice
  login       sign in (authorization code + PKCE on loopback; --device for the device flow)
  whoami      show who the stored token belongs to (GET /api/v1/me)
  token       print a fresh access token (refreshed when < 5 min remain)
  logout      revoke the refresh token and delete the stored credentials
  verify      prove against a live deployment that no user sees another's data (docs/VERIFY.md)
  version     print the version
`

// run is the whole program; main only supplies the process's environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("no command given")
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], getenv, stdout, stderr)
	case "migrate":
		return cmdMigrate(ctx, args[1:], getenv, stdout, stderr)
	case "dev-token":
		return cmdDevToken(ctx, args[1:], getenv, stdout, stderr)
	case "verify":
		return cmdVerify(ctx, args[1:], getenv, stdout, stderr) // verify.go
	case "login", "whoami", "token", "logout":
		return newCLI(getenv, stdout, stderr).cmd(ctx, args[0], args[1:]) // cli_login.go, cli_token.go
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "idflow", version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
		if v != "" {
			return v
		}
	}
	return "(devel)"
}
