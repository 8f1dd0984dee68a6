// Package web is the browser side of idflow: the embedded UI (no build step,
// no CDN, no inline script) and the browser login, a backend-for-frontend
// that keeps tokens server-side and gives the browser only an HttpOnly
// session cookie.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/idflow/idflow"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy forbids inline script and every origin but our own.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// Asset answers one embedded UI file; name "" is the page itself.
func Asset(w http.ResponseWriter, r *http.Request, name string) error {
	if name == "" {
		name = "index.html"
	}
	name = path.Clean("/" + name)[1:]
	b, err := fs.ReadFile(static, "static/"+name)
	if err != nil {
		return idflow.Errorf(idflow.ENOTFOUND, "no such file")
	}
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("Cache-Control", "no-cache")
	switch {
	case strings.HasSuffix(name, ".html"):
		h.Set("Content-Type", "text/html; charset=utf-8")
	case strings.HasSuffix(name, ".js"):
		h.Set("Content-Type", "text/javascript; charset=utf-8")
	case strings.HasSuffix(name, ".css"):
		h.Set("Content-Type", "text/css; charset=utf-8")
	default:
		h.Set("Content-Type", "application/octet-stream")
	}
	_, err = w.Write(b)
	return err
}
