package httpapi

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
)

// The OpenAPI 3.1 document is generated from the routes table, so the two
// cannot drift; schemas are derived from the Go types by reflection.

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

type openAPIBuilder struct {
	schemas map[string]any
}

func (s *Server) openAPI() map[string]any {
	b := &openAPIBuilder{schemas: map[string]any{}}
	b.schemas["Problem"] = b.schemaOf(reflect.TypeOf(problem{}))
	paths := map[string]map[string]any{}
	for _, rt := range s.api {
		path := openAPIPath(rt.pattern)
		if paths[path] == nil {
			paths[path] = map[string]any{}
		}
		paths[path][strings.ToLower(rt.method)] = b.operation(rt)
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "idflow",
			"version":     "v1",
			"description": "Identity-first backend for multi-user AI agent apps. Every object belongs to the verified caller; another user's object answers 404.",
		},
		"servers": []any{map[string]any{"url": s.cfg.PublicURL}},
		"paths":   paths,
		"components": map[string]any{
			"schemas": b.schemas,
			"securitySchemes": map[string]any{
				"bearer":  map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
				"session": map[string]any{"type": "apiKey", "in": "cookie", "name": auth.CookiesFor(s.cfg.PublicURL).Session},
			},
		},
	}
}

func (b *openAPIBuilder) operation(rt route) map[string]any {
	op := map[string]any{
		"summary":     rt.summary,
		"operationId": operationID(rt),
		"x-access":    accessName(rt.access),
	}
	if sc := rt.tokenScope(); sc != "" {
		op["x-token-scope"] = sc // the personal access token scope it needs; absent: PATs are refused
	}
	if rt.access == accessOpen {
		op["security"] = []any{}
	} else {
		op["security"] = []any{map[string]any{"bearer": []any{}}, map[string]any{"session": []any{}}}
	}
	var params []any
	for _, m := range pathParam.FindAllStringSubmatch(openAPIPath(rt.pattern), -1) {
		params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
	}
	if rt.method == "GET" && rt.out != nil && strings.HasPrefix(reflect.TypeOf(rt.out).Name(), "List[") {
		params = append(params,
			map[string]any{"name": "limit", "in": "query", "schema": map[string]any{"type": "integer", "minimum": 1, "maximum": idflow.MaxPageLimit, "default": idflow.DefaultPageLimit}},
			map[string]any{"name": "cursor", "in": "query", "schema": map[string]any{"type": "string"}})
	}
	if params != nil {
		op["parameters"] = params
	}
	if rt.in != nil {
		op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
			"application/json": map[string]any{"schema": b.ref(reflect.TypeOf(rt.in))},
		}}
	}
	status := rt.status
	if status == 0 {
		status = http.StatusOK
	}
	ok := map[string]any{"description": http.StatusText(status)}
	if rt.out != nil {
		ok["content"] = map[string]any{"application/json": map[string]any{"schema": b.ref(reflect.TypeOf(rt.out))}}
	}
	problemResp := func(code int) map[string]any {
		return map[string]any{"description": http.StatusText(code), "content": map[string]any{
			"application/problem+json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Problem"}}}}
	}
	responses := map[string]any{strconv.Itoa(status): ok}
	if rt.access != accessOpen {
		responses["401"] = problemResp(401)
		responses["403"] = problemResp(403)
	}
	if strings.Contains(openAPIPath(rt.pattern), "{") {
		responses["404"] = problemResp(404)
	}
	if rt.in != nil {
		responses["400"] = problemResp(400)
		responses["413"] = problemResp(413)
	}
	op["responses"] = responses
	return op
}

// openAPIPath is a route pattern as an OpenAPI path: ServeMux's {$}
// (exactly this path) is not a parameter, so "/{$}" is documented as "/".
func openAPIPath(pattern string) string {
	return strings.TrimSuffix(pattern, "{$}")
}

func operationID(rt route) string {
	p := strings.NewReplacer("/api/v1/", "", "/", "_", "{", "", "}", "", ".", "", "-", "_").Replace(openAPIPath(rt.pattern))
	if p = strings.Trim(p, "_"); p == "" {
		p = "root"
	}
	return strings.ToLower(rt.method) + "_" + p
}

func accessName(a access) string {
	return map[access]string{accessOpen: "open", accessAny: "any", accessUser: "user", accessAdmin: "admin", accessInternal: "internal", accessSCIM: "scim"}[a]
}

var timeType = reflect.TypeOf(time.Time{})
var rawType = reflect.TypeOf(json.RawMessage{})

// ref returns a schema reference for named struct types, inline otherwise.
func (b *openAPIBuilder) ref(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == timeType {
		return b.schemaOf(t)
	}
	name := schemaName(t)
	if _, ok := b.schemas[name]; !ok {
		b.schemas[name] = map[string]any{} // placeholder against recursion
		b.schemas[name] = b.schemaOf(t)
	}
	return map[string]any{"$ref": "#/components/schemas/" + name}
}

func schemaName(t reflect.Type) string {
	n := t.Name()
	if i := strings.Index(n, "["); i >= 0 {
		inner := n[i+1 : len(n)-1]
		inner = inner[strings.LastIndex(inner, ".")+1:]
		return inner + upperFirst(n[:i])
	}
	return upperFirst(n)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func (b *openAPIBuilder) schemaOf(t reflect.Type) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType:
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		s := b.ref(t.Elem())
		return map[string]any{"oneOf": []any{s, map[string]any{"type": "null"}}}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": b.ref(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": b.ref(t.Elem())}
	case reflect.Struct:
		props := map[string]any{}
		var required []string
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = b.ref(f.Type)
			if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
				required = append(required, name)
			}
		}
		s := map[string]any{"type": "object", "properties": props}
		if len(required) > 0 {
			s["required"] = required
		}
		return s
	}
	return map[string]any{}
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	s.openAPIOnce.Do(func() { s.openAPIDoc, _ = json.MarshalIndent(s.openAPI(), "", "  ") })
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(s.openAPIDoc)
	return err
}
