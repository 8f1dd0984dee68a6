package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idflow/idflow"
)

// A JSON route reads JSON only: a form or text/plain body — what another
// site's page can send without a CORS preflight — is refused with 415, as
// is a body without a Content-Type. A request without a body passes to the
// "a body is required" check.
func TestRequireJSON(t *testing.T) {
	req := func(body string, cts ...string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/facts", strings.NewReader(body))
		for _, ct := range cts {
			r.Header.Add("Content-Type", ct)
		}
		return r
	}
	for _, ct := range []string{
		"application/json", "application/json; charset=utf-8", "Application/JSON; charset=UTF-8",
		"application/merge-patch+json", "application/vnd.idflow+json",
	} {
		if err := requireJSON(req(`{}`, ct)); err != nil {
			t.Errorf("%q refused: %v", ct, err)
		}
	}
	refused := map[string][]string{
		"no Content-Type":           nil,
		"text/plain":                {"text/plain"},
		"text/plain with charset":   {"text/plain;charset=UTF-8"},
		"form":                      {"application/x-www-form-urlencoded"},
		"multipart":                 {"multipart/form-data; boundary=x"},
		"latin-1 JSON":              {"application/json; charset=iso-8859-1"},
		"text/json":                 {"text/json"},
		"+json outside application": {"text/x+json"},
		"json as a parameter":       {"text/plain; type=application/json"},
		"malformed":                 {"application/json; charset"},
		"empty":                     {""},
		"two types":                 {"application/json", "text/plain"},
		"two JSON types":            {"application/json", "application/json"},
	}
	for name, cts := range refused {
		err := requireJSON(req(`{"content":"x"}`, cts...))
		if idflow.ErrorCode(err) != idflow.EMEDIATYPE || statusOf(idflow.ErrorCode(err)) != http.StatusUnsupportedMediaType {
			t.Errorf("%s: %v; want 415", name, err)
		}
		if !strings.Contains(idflow.ErrorMessage(err), "application/json") {
			t.Errorf("%s: message %q does not say what to send", name, idflow.ErrorMessage(err))
		}
	}
	// No body: not a media type question.
	if err := requireJSON(req("", "text/plain")); err != nil {
		t.Errorf("empty body: %v", err)
	}
	var dst factIn
	if err := decode(req("", "text/plain"), &dst); idflow.ErrorCode(err) != idflow.EINVALID {
		t.Errorf("decode of no body: %v; want 400", err)
	}
	// A chunked body of unknown length is a body.
	r := req(`{"content":"x"}`)
	r.ContentLength = -1
	if err := requireJSON(r); idflow.ErrorCode(err) != idflow.EMEDIATYPE {
		t.Errorf("chunked without a type: %v", err)
	}
}
