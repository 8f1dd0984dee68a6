package httpapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/idflow/idflow/auth"
)

// openAPITestServer is a server with no credential source: every
// authenticated route answers 401, which is enough to see it exists.
func openAPITestServer(t *testing.T) *Server {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := auth.NewSigner(key, "http://idflow.test")
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{PublicURL: "http://idflow.test"}, Deps{Authn: auth.New(auth.Config{}), Signer: signer})
}

// openAPIDoc is the document as a client sees it: marshalled and parsed.
func openAPIDoc(t *testing.T, s *Server) map[string]any {
	t.Helper()
	b, err := json.Marshal(s.openAPI())
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("the OpenAPI document is not JSON: %v", err)
	}
	return doc
}

func TestOpenAPIDocument(t *testing.T) {
	s := openAPITestServer(t)
	doc := openAPIDoc(t, s)
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi %v; want 3.1.0", doc["openapi"])
	}
	info, _ := doc["info"].(map[string]any)
	if info["title"] == "" || info["version"] == "" {
		t.Errorf("info %v lacks title or version", info)
	}
	paths, ok := doc["paths"].(map[string]any)
	if !ok || len(paths) == 0 {
		t.Fatal("no paths")
	}

	// Every route is documented, with its method and access level.
	routes := s.api
	byPath := map[string]route{}
	seen := map[string]bool{}
	for _, rt := range routes {
		key := rt.method + " " + rt.pattern
		if seen[key] {
			t.Errorf("route %s is registered twice", key)
		}
		seen[key] = true
		byPath[rt.method+" "+openAPIPath(rt.pattern)] = rt
		item, _ := paths[openAPIPath(rt.pattern)].(map[string]any)
		op, ok := item[strings.ToLower(rt.method)].(map[string]any)
		if !ok {
			t.Errorf("route %s is not in the document", key)
			continue
		}
		if op["x-access"] != accessName(rt.access) || op["x-access"] == "" {
			t.Errorf("%s: x-access %v; want %q", key, op["x-access"], accessName(rt.access))
		}
		status := rt.status
		if status == 0 {
			status = 200
		}
		responses, _ := op["responses"].(map[string]any)
		if _, ok := responses[strconv.Itoa(status)]; !ok {
			t.Errorf("%s: the success status %d is not documented", key, status)
		}
		if rt.access != accessOpen {
			if _, ok := responses["401"]; !ok {
				t.Errorf("%s: 401 is not documented", key)
			}
		}
	}

	// Every documented operation is a route, served by its own handler on
	// the real mux, not by the catch-all.
	mux, ok := s.mux().(*http.ServeMux)
	if !ok {
		t.Fatalf("mux() is a %T, not a *http.ServeMux", s.mux())
	}
	opIDs := map[string]string{}
	count := 0
	for path, item := range paths {
		if strings.Contains(path, "{$}") {
			t.Errorf("path %q carries ServeMux syntax", path)
		}
		for method, rawOp := range item.(map[string]any) {
			count++
			key := strings.ToUpper(method) + " " + path
			rt, ok := byPath[key]
			if !ok {
				t.Errorf("documented operation %s has no route", key)
				continue
			}
			op := rawOp.(map[string]any)
			id, _ := op["operationId"].(string)
			if id == "" || opIDs[id] != "" {
				t.Errorf("%s: operationId %q is empty or also used by %s", key, id, opIDs[id])
			}
			opIDs[id] = key
			concrete := pathParam.ReplaceAllString(path, "x1")
			for _, p := range pathParam.FindAllStringSubmatch(path, -1) {
				found := false
				for _, prm := range asSlice(op["parameters"]) {
					m := prm.(map[string]any)
					found = found || (m["name"] == p[1] && m["in"] == "path" && m["required"] == true)
				}
				if !found {
					t.Errorf("%s: path parameter %s is not documented as required", key, p[1])
				}
			}
			req := httptest.NewRequest(strings.ToUpper(method), concrete, nil)
			if _, pattern := mux.Handler(req); pattern != rt.pattern {
				t.Errorf("%s: %s resolves to the pattern %q; want %q", key, concrete, pattern, rt.pattern)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code == http.StatusMethodNotAllowed {
				t.Errorf("%s: %s answered %d %s", key, concrete, w.Code, w.Body)
			}
			if rt.access != accessOpen && w.Code != http.StatusUnauthorized {
				t.Errorf("%s without credentials answered %d; want 401", key, w.Code)
			}
		}
	}
	if count != len(routes) {
		t.Errorf("%d documented operations, %d routes", count, len(routes))
	}

	// Every $ref resolves.
	refs := 0
	walkRefs(doc, func(ref string) {
		refs++
		if _, ok := resolvePointer(doc, ref); !ok {
			t.Errorf("$ref %q does not resolve", ref)
		}
	})
	if refs == 0 {
		t.Error("the document has no $ref at all")
	}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func walkRefs(v any, fn func(string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "$ref" {
				s, _ := e.(string)
				fn(s)
				continue
			}
			walkRefs(e, fn)
		}
	case []any:
		for _, e := range x {
			walkRefs(e, fn)
		}
	}
}

// resolvePointer resolves a local JSON pointer reference (#/a/b).
func resolvePointer(doc map[string]any, ref string) (any, bool) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	var cur any = doc
	for _, tok := range strings.Split(p, "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}
