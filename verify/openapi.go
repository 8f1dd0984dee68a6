package verify

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// The routes come from the server's own /openapi.json, which idflow
// generates from its route table: a route added to the server is walked
// without a change here. Each operation carries x-access, the access level
// the server enforces (open, any, user, admin, internal).

// operation is one method on one path of the API.
type operation struct {
	Method, Path, Access string
	Success              int      // the lowest documented 2xx status
	Params               []string // path parameters, in order
	List                 bool     // a paged list (documents ?cursor=)
	// IDFields are the request body's properties that name an object
	// (`app_id`, …): a caller can name A's object there too.
	IDFields []string
	body     map[string]any // the request body's schema, resolved; nil: none
	schemas  map[string]any
}

func (o operation) key() string { return o.Method + " " + o.Path }

// create reports whether the operation makes a new object of the caller's.
func (o operation) create() bool { return o.Method == "POST" && o.Success == 201 && len(o.Params) == 0 }

var (
	paramRE     = regexp.MustCompile(`\{([A-Za-z0-9_]+)\}`)
	httpMethods = []string{"get", "put", "post", "delete", "patch"}
)

// parseOpenAPI reads every operation of an OpenAPI 3.1 document, sorted by
// path and method.
func parseOpenAPI(data []byte) ([]operation, error) {
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("/openapi.json is not an OpenAPI document: %w", err)
	}
	var ops []operation
	for path, item := range doc.Paths {
		for method, raw := range item {
			if !slices.Contains(httpMethods, method) {
				continue
			}
			var op struct {
				Access      string                      `json:"x-access"`
				Responses   map[string]json.RawMessage  `json:"responses"`
				Parameters  []struct{ Name, In string } `json:"parameters"`
				RequestBody struct {
					Content map[string]struct {
						Schema map[string]any `json:"schema"`
					} `json:"content"`
				} `json:"requestBody"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				return nil, fmt.Errorf("/openapi.json: %s %s: %w", method, path, err)
			}
			o := operation{Method: strings.ToUpper(method), Path: path, Access: op.Access, schemas: doc.Components.Schemas}
			for code := range op.Responses {
				if n, err := strconv.Atoi(code); err == nil && n >= 200 && n < 300 && (o.Success == 0 || n < o.Success) {
					o.Success = n
				}
			}
			for _, m := range paramRE.FindAllStringSubmatch(path, -1) {
				o.Params = append(o.Params, m[1])
			}
			for _, p := range op.Parameters {
				if p.In == "query" && p.Name == "cursor" {
					o.List = true
				}
			}
			if c, ok := op.RequestBody.Content["application/json"]; ok {
				o.body = o.resolve(c.Schema)
				props, _ := o.body["properties"].(map[string]any)
				for _, name := range slices.Sorted(maps.Keys(props)) {
					if strings.HasSuffix(name, "_id") {
						o.IDFields = append(o.IDFields, name)
					}
				}
			}
			ops = append(ops, o)
		}
	}
	if len(ops) == 0 {
		return nil, fmt.Errorf("/openapi.json lists no operations")
	}
	sort.Slice(ops, func(i, j int) bool {
		if ops[i].Path != ops[j].Path {
			return ops[i].Path < ops[j].Path
		}
		return ops[i].Method < ops[j].Method
	})
	return ops, nil
}

// resolve follows a local $ref.
func (o operation) resolve(s map[string]any) map[string]any {
	for range 8 {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		name, ok := strings.CutPrefix(ref, "#/components/schemas/")
		if !ok {
			return s
		}
		next, ok := o.schemas[name].(map[string]any)
		if !ok {
			return s
		}
		s = next
	}
	return s
}

// example is a plausible request body for a route the verifier has no
// case for: every required property, or else the first string one.
func (o operation) example(text string) map[string]any {
	props, _ := o.body["properties"].(map[string]any)
	out := map[string]any{}
	var required []string
	if rs, ok := o.body["required"].([]any); ok {
		for _, r := range rs {
			if s, ok := r.(string); ok {
				required = append(required, s)
			}
		}
	}
	for _, name := range required {
		if strings.HasSuffix(name, "_id") {
			continue
		}
		if p, ok := props[name].(map[string]any); ok {
			out[name] = o.value(o.resolve(p), text, 0)
		}
	}
	if len(out) == 0 {
		for _, name := range slices.Sorted(maps.Keys(props)) {
			if p, ok := props[name].(map[string]any); ok && p["type"] == "string" && !strings.HasSuffix(name, "_id") {
				out[name] = text
				break
			}
		}
	}
	return out
}

func (o operation) value(s map[string]any, text string, depth int) any {
	switch s["type"] {
	case "string":
		return text
	case "integer", "number":
		return 1
	case "boolean":
		return false
	case "array":
		return []any{}
	case "object":
		if depth > 3 {
			return map[string]any{}
		}
		sub := operation{body: s, schemas: o.schemas}
		return sub.example(text)
	}
	return nil
}
