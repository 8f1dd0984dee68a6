package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/idflow/idflow"
)

// readOnlyFields may appear in a request body (clients echo objects back)
// and are ignored: the owner, ids and timestamps are never taken from a client.
var readOnlyFields = map[string]bool{
	"id": true, "user_id": true, "created_at": true, "updated_at": true,
}

// decode reads a JSON object into dst. The one documented rule for unknown
// fields: read-only fields (id, user_id, created_at, updated_at) are ignored;
// any other field dst does not know is refused with 400 naming it, so a typo
// never silently drops data.
func decode(r *http.Request, dst any) error {
	if err := requireJSON(r); err != nil {
		return err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return idflow.WrapError(idflow.EINVALID, "could not read the request body", err)
	}
	return decodeBytes(body, dst)
}

// requireJSON refuses, with 415, a body not declared as JSON:
// application/json or application/*+json, in UTF-8 if a charset is given.
// A form or text/plain body is what another site's page can send without a
// CORS preflight; a JSON route never reads one as JSON. A request without
// a body passes (decodeBytes then says a body is required).
func requireJSON(r *http.Request) error {
	if r.ContentLength == 0 {
		return nil
	}
	if cts := r.Header.Values("Content-Type"); len(cts) == 1 && jsonMediaType(cts[0]) {
		return nil
	}
	return unsupportedMediaType("application/json")
}

// jsonMediaType reports whether the Content-Type value ct is JSON.
func jsonMediaType(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false
	}
	return mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

// unsupportedMediaType is the 415 of a route that reads only the given types.
func unsupportedMediaType(types string) error {
	return idflow.Errorf(idflow.EMEDIATYPE, "send the body with Content-Type: %s", types)
}

func decodeBytes(body []byte, dst any) error {
	body = bytes.Trim(body, " \t\r\n") // JSON's white space, no other
	if len(body) == 0 {
		return idflow.Errorf(idflow.EINVALID, "a JSON object body is required")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil { // null is no object
		return idflow.WrapError(idflow.EINVALID, "the body must be a JSON object", err)
	}
	known := jsonFields(reflect.TypeOf(dst))
	for name := range fields {
		if !known[name] && !readOnlyFields[name] {
			return idflow.Errorf(idflow.EINVALID, "unknown field %q", name)
		}
	}
	for name := range readOnlyFields {
		delete(fields, name)
	}
	clean, err := json.Marshal(fields)
	if err != nil {
		return idflow.WrapError(idflow.EINVALID, "the body must be a JSON object", err)
	}
	// Nested objects (a workflow's steps) follow the same rule: an unknown
	// field is refused, never dropped.
	dec := json.NewDecoder(bytes.NewReader(clean))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return idflow.Errorf(idflow.EINVALID, "field %q has the wrong type (want %s)", te.Field, te.Type)
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return idflow.Errorf(idflow.EINVALID, "unknown field %s", name)
		}
		return idflow.WrapError(idflow.EINVALID, "the body is not valid for this request", err)
	}
	return nil
}

var fieldCache sync.Map // reflect.Type → map[string]bool

// jsonFields are the JSON names a struct type accepts.
func jsonFields(t reflect.Type) map[string]bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v, ok := fieldCache.Load(t); ok {
		return v.(map[string]bool)
	}
	m := map[string]bool{}
	if t.Kind() == reflect.Struct {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			m[name] = true
		}
	}
	fieldCache.Store(t, m)
	return m
}

// page reads ?limit= and ?cursor=.
func page(r *http.Request) (idflow.Page, error) {
	q := r.URL.Query()
	p := idflow.Page{Cursor: q.Get("cursor")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > idflow.MaxPageLimit {
			return p, idflow.Errorf(idflow.EINVALID, "limit must be an integer within 1..%d", idflow.MaxPageLimit)
		}
		p.Limit = n
	}
	if len(p.Cursor) > 512 {
		return p, idflow.Errorf(idflow.EINVALID, "invalid cursor")
	}
	return p, nil
}
