package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idflow/idflow"
)

func TestStatusOfEveryCode(t *testing.T) {
	for code, want := range map[string]int{
		idflow.EINVALID:      400,
		idflow.EUNAUTHORIZED: 401,
		idflow.EFORBIDDEN:    403,
		idflow.ENOTFOUND:     404,
		idflow.ECONFLICT:     409,
		idflow.ETOOLARGE:     413,
		idflow.ERATELIMIT:    429,
		idflow.EUNAVAILABLE:  503,
		idflow.EINTERNAL:     500,
		"no-such-code":       500,
	} {
		if got := statusOf(code); got != want {
			t.Errorf("statusOf(%q) = %d; want %d", code, got, want)
		}
	}
}

func TestWriteError(t *testing.T) {
	s := New(Config{}, Deps{})
	secret := errors.New("sqlite: disk I/O error at /var/lib/idflow/idflow.db")
	tests := []struct {
		name      string
		err       error
		auth      string // Authorization header of the request
		status    int
		detail    string
		challenge string // WWW-Authenticate prefix; "" = none
	}{
		{"invalid", idflow.Errorf(idflow.EINVALID, "name is required"), "", 400, "name is required", ""},
		{"not found", idflow.NotFound("app"), "", 404, "app not found", ""},
		{"body too large", fmt.Errorf("read: %w", &http.MaxBytesError{Limit: 1 << 20}), "", 413, "larger than 1048576", ""},
		{"internal cause hidden", fmt.Errorf("list apps: %w", secret), "", 500, "internal error", ""},
		{"wrapped cause hidden", idflow.WrapError(idflow.EUNAVAILABLE, "store unavailable", secret), "", 503, "store unavailable", ""},
		{"no credentials", idflow.Errorf(idflow.EUNAUTHORIZED, "authentication required"), "", 401, "authentication required", `Bearer realm="idflow"`},
		{"bad token", idflow.Errorf(idflow.EUNAUTHORIZED, "token expired"), "Bearer x", 401, "token expired", `Bearer realm="idflow", error="invalid_token"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/api/v1/apps", nil)
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			w := httptest.NewRecorder()
			s.writeError(w, r, tt.err)
			if w.Code != tt.status {
				t.Fatalf("status %d; want %d", w.Code, tt.status)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q", ct)
			}
			var p problem
			dec := json.NewDecoder(w.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&p); err != nil {
				t.Fatal(err)
			}
			if p.Status != tt.status || p.Title != http.StatusText(tt.status) || !strings.HasPrefix(p.Type, "urn:idflow:problem:") ||
				!strings.Contains(p.Detail, tt.detail) {
				t.Fatalf("problem %+v; want status %d, detail with %q", p, tt.status, tt.detail)
			}
			if strings.Contains(p.Detail, "sqlite") || strings.Contains(p.Detail, "/var/lib") {
				t.Fatalf("the problem shows an internal cause: %q", p.Detail)
			}
			got := w.Header().Get("WWW-Authenticate")
			if tt.challenge == "" && got != "" || !strings.HasPrefix(got, tt.challenge) {
				t.Fatalf("WWW-Authenticate %q; want prefix %q", got, tt.challenge)
			}
		})
	}
}

// TestPanicAnswersProblem: a handler that panics answers 500 problem+json
// and the server keeps serving.
func TestPanicAnswersProblem(t *testing.T) {
	s := New(Config{}, Deps{})
	h := s.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/x", nil))
	if w.Code != 500 || w.Header().Get("Content-Type") != "application/problem+json" || strings.Contains(w.Body.String(), "boom") {
		t.Fatalf("panic answered %d %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
}

func TestPage(t *testing.T) {
	for q, ok := range map[string]bool{
		"": true, "limit=1": true, "limit=200": true, "cursor=abc": true,
		"limit=0": false, "limit=201": false, "limit=-5": false, "limit=x": false, "limit=1e2": false,
		"cursor=" + strings.Repeat("c", 513): false,
	} {
		_, err := page(httptest.NewRequest(http.MethodGet, "/api/v1/apps?"+q, nil))
		if (err == nil) != ok {
			t.Errorf("page(%q): err %v; want ok=%v", q, err, ok)
		}
		if err != nil && idflow.ErrorCode(err) != idflow.EINVALID {
			t.Errorf("page(%q): code %s; want invalid", q, idflow.ErrorCode(err))
		}
	}
}

func TestStaticList(t *testing.T) {
	all := []string{"a", "b", "c"}
	get := func(q string) (int, idflow.List[string]) {
		w := httptest.NewRecorder()
		err := staticList(w, httptest.NewRequest(http.MethodGet, "/x?"+q, nil), all)
		if err != nil {
			return statusOf(idflow.ErrorCode(err)), idflow.List[string]{}
		}
		var l idflow.List[string]
		if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		return w.Code, l
	}
	var seen []string
	q := "limit=2"
	for range 3 {
		code, l := get(q)
		if code != 200 {
			t.Fatalf("%s: %d", q, code)
		}
		seen = append(seen, l.Items...)
		if l.NextCursor == "" {
			break
		}
		q = "limit=2&cursor=" + l.NextCursor
	}
	if strings.Join(seen, "") != "abc" {
		t.Fatalf("pages gave %v", seen)
	}
	for _, bad := range []string{"cursor=0", "cursor=3", "cursor=-1", "cursor=x", "cursor=01", "limit=0"} {
		if code, _ := get(bad); code != 400 {
			t.Errorf("%s: %d; want 400", bad, code)
		}
	}
}
