package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"reflect"
	"strings"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/service"
)

// decodeTargets are the request body types of every JSON route.
var decodeTargets = []func() any{
	func() any { return &appIn{} },
	func() any { return &sessionIn{} },
	func() any { return &messageIn{} },
	func() any { return &agentIn{} },
	func() any { return &workflowIn{} },
	func() any { return &ingestIn{} },
	func() any { return &factIn{} },
	func() any { return &searchIn{} },
	func() any { return &runIn{} },
	func() any { return &idflow.AppPatch{} },
	func() any { return &idflow.SessionPatch{} },
	func() any { return &idflow.AgentPatch{} },
	func() any { return &tokenIn{} },
}

// TestDecodeTargetsCoverRoutes keeps decodeTargets in step with the routes.
func TestDecodeTargetsCoverRoutes(t *testing.T) {
	have := map[reflect.Type]bool{}
	for _, mk := range decodeTargets {
		have[reflect.TypeOf(mk()).Elem()] = true
	}
	for _, rt := range New(Config{}, Deps{}).api {
		// SCIM documents are read by package scim (its own fuzz tests).
		if rt.in != nil && rt.access != accessSCIM && !have[reflect.TypeOf(rt.in)] {
			t.Errorf("%s %s: body type %T is not among decodeTargets", rt.method, rt.pattern, rt.in)
		}
	}
}

func TestDecodeBytes(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		dst    func() any
		want   any    // the decoded value when accepted
		detail string // a substring of the refusal; "" = accepted
	}{
		{"object", `{"name":"a","description":"b"}`, decodeTargets[0], &appIn{Name: "a", Description: "b"}, ""},
		{"padded", " \n{\"name\":\"a\"}\t", decodeTargets[0], &appIn{Name: "a"}, ""},
		{"read-only fields are ignored", `{"id":"app_x","user_id":"mallory","created_at":"x","updated_at":5,"name":"a"}`,
			decodeTargets[0], &appIn{Name: "a"}, ""},
		{"empty", ``, decodeTargets[0], nil, "required"},
		{"null", `null`, decodeTargets[0], nil, "JSON object"},
		{"form feed is no JSON white space", "\f{}", decodeTargets[0], nil, "JSON object"},
		{"array", `[{"name":"a"}]`, decodeTargets[0], nil, "JSON object"},
		{"string", `"a"`, decodeTargets[0], nil, "JSON object"},
		{"trailing data", `{"name":"a"}{}`, decodeTargets[0], nil, "JSON object"},
		{"unknown field", `{"name":"a","owner":"bob"}`, decodeTargets[0], nil, `"owner"`},
		{"unknown field differing in case", `{"Name":"a"}`, decodeTargets[0], nil, `"Name"`},
		{"wrong type", `{"name":1}`, decodeTargets[0], nil, `"name"`},
		{"nested unknown field", `{"name":"w","definition":{"steps":[{"id":"a","type":"wait","ms":1,"sleep":2}]}}`,
			decodeTargets[4], nil, `"sleep"`},
		{"nested unknown member", `{"name":"w","definition":{"stepz":[]}}`, decodeTargets[4], nil, `"stepz"`},
		{"nested wrong type", `{"name":"w","definition":{"steps":[{"id":1}]}}`, decodeTargets[4], nil, "steps"},
		{"patch with null", `{"name":null}`, decodeTargets[9], &idflow.AppPatch{}, ""},
		{"run input is free-form", `{"input":{"anything":[1,{"x":null}]}}`, decodeTargets[8],
			&runIn{Input: json.RawMessage(`{"anything":[1,{"x":null}]}`)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := tt.dst()
			err := decodeBytes([]byte(tt.body), dst)
			if tt.detail != "" {
				if err == nil {
					t.Fatalf("accepted %q as %+v", tt.body, dst)
				}
				if idflow.ErrorCode(err) != idflow.EINVALID || !strings.Contains(idflow.ErrorMessage(err), tt.detail) {
					t.Fatalf("error %v (code %s); want invalid naming %s", err, idflow.ErrorCode(err), tt.detail)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused %q: %v", tt.body, err)
			}
			if !reflect.DeepEqual(dst, tt.want) {
				t.Fatalf("decoded %+v; want %+v", dst, tt.want)
			}
		})
	}
}

// checkDecoded asserts what an accepted body may be: a JSON object whose
// members are the target's fields or read-only ones, and whose value
// re-encodes to the target's fields only and decodes again to the same.
func checkDecoded(t *testing.T, body []byte, dst any, again func() any) {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		t.Fatalf("accepted %q, which is not a JSON object", body)
	}
	known := jsonFields(reflect.TypeOf(dst))
	for name := range fields {
		if !known[name] && !readOnlyFields[name] {
			t.Fatalf("accepted the unknown field %q in %q", name, body)
		}
	}
	out, err := json.Marshal(dst)
	if err != nil {
		t.Fatalf("re-encoding %+v: %v", dst, err)
	}
	var re map[string]json.RawMessage
	if err := json.Unmarshal(out, &re); err != nil {
		t.Fatal(err)
	}
	for name := range re {
		if !known[name] {
			t.Fatalf("the decoded value has a field %q its type does not allow", name)
		}
		if readOnlyFields[name] {
			t.Fatalf("the decoded value carries the read-only field %q", name)
		}
	}
	dst2 := again()
	if err := decodeBytes(out, dst2); err != nil {
		t.Fatalf("the re-encoded value %s is refused: %v", out, err)
	}
	out2, _ := json.Marshal(dst2)
	if !bytes.Equal(out, out2) {
		t.Fatalf("decoding is not stable:\n%s\n%s", out, out2)
	}
}

func FuzzDecode(f *testing.F) {
	seeds := []string{
		`{"name":"a","description":"b"}`,
		`{"title":"t","app_id":"app_x","agent_id":"agt_y"}`,
		`{"content":"hello"}`,
		`{"name":"n","instructions":"i","model":"m","tools":["a","b"]}`,
		`{"name":"w","definition":{"steps":[{"id":"a","type":"prompt","prompt":"p"},{"id":"b","type":"tool","tool":"t","args":{"k":[1,2]}},{"id":"c","type":"wait","ms":5}]}}`,
		`{"filename":"f.txt","content":"c","content_type":"text/plain","app_id":""}`,
		`{"query":"q","limit":5}`,
		`{"input":{"a":1},"version":2}`,
		`{"name":null,"description":"x"}`,
		`{"tools":null}`,
		`{"id":"x","user_id":"y","created_at":"z","updated_at":"w"}`,
		`null`, `[]`, `{}`, `{"a":`, `{"name":"\u0000"}`, "{\"name\":\"\xff\"}", `{"name":"a","name":"b"}`,
		`{"definition":{"Steps":[]}}`, `{"limit":1e400}`, `{"version":-0}`, "\f{}", "\u00a0{}",
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		mk := decodeTargets[int(which)%len(decodeTargets)]
		dst := mk()
		err := decodeBytes(body, dst)
		if err != nil {
			// A refusal is always the caller's fault: 400, never 500.
			if idflow.ErrorCode(err) != idflow.EINVALID {
				t.Fatalf("refusal of %q has code %s: %v", body, idflow.ErrorCode(err), err)
			}
			return
		}
		checkDecoded(t, body, dst, mk)
	})
}

// ingestForm builds a multipart body with a fixed boundary.
func ingestForm(t testing.TB, parts ...[3]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.SetBoundary("idflowfuzzboundary"); err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		disp := `form-data; name="` + p[0] + `"`
		if p[1] != "" {
			disp += `; filename="` + p[1] + `"`
			h.Set("Content-Type", "text/plain")
		}
		h.Set("Content-Disposition", disp)
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte(p[2]))
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadIngestForm(t *testing.T) {
	tests := []struct {
		name   string
		body   []byte
		limit  int64
		want   string // content when accepted
		detail string // "" = accepted; "413" = over the limit
	}{
		{"file", ingestForm(t, [3]string{"file", "a.txt", "hello"}), 1 << 20, "hello", ""},
		{"file and app", ingestForm(t, [3]string{"app_id", "", "app_x"}, [3]string{"file", "a.txt", "hello"}), 1 << 20, "hello", ""},
		{"no file", ingestForm(t, [3]string{"app_id", "", "app_x"}), 1 << 20, "", "file"},
		{"two files", ingestForm(t, [3]string{"file", "a", "1"}, [3]string{"file", "b", "2"}), 1 << 20, "", "one file"},
		{"unknown field", ingestForm(t, [3]string{"file", "a", "1"}, [3]string{"user_id", "", "bob"}), 1 << 20, "", "user_id"},
		{"garbage", []byte("--idflowfuzzboundary\r\nno headers end"), 1 << 20, "", "multipart"},
		{"over the limit", ingestForm(t, [3]string{"file", "a.txt", strings.Repeat("x", 4096)}), 1024, "", "413"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := readForm(tt.body, tt.limit)
			switch {
			case tt.detail == "413":
				var mbe *http.MaxBytesError
				if !errors.As(err, &mbe) {
					t.Fatalf("err %v; want a MaxBytesError (413)", err)
				}
			case tt.detail != "":
				if err == nil || idflow.ErrorCode(err) != idflow.EINVALID || !strings.Contains(idflow.ErrorMessage(err), tt.detail) {
					t.Fatalf("err %v; want invalid naming %q", err, tt.detail)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if string(in.Content) != tt.want || in.Filename != "a.txt" {
					t.Fatalf("read %+v", in)
				}
			}
		})
	}
}

// readForm reads body as the ingest route does, under a body limit.
func readForm(body []byte, limit int64) (in service.IngestInput, err error) {
	r := httptest.NewRequest(http.MethodPost, "/api/v1/etl/ingest", bytes.NewReader(body))
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, limit)
	mr, err := multipartReader(r, map[string]string{"boundary": "idflowfuzzboundary"})
	if err != nil {
		return in, err
	}
	return readIngestForm(mr)
}

func FuzzIngestMultipart(f *testing.F) {
	f.Add(ingestForm(f, [3]string{"file", "a.txt", "hello"}))
	f.Add(ingestForm(f, [3]string{"app_id", "", "app_123"}, [3]string{"file", "notes.md", "# notes\n\nbody"}))
	f.Add(ingestForm(f, [3]string{"file", "a", "1"}, [3]string{"file", "b", "2"}))
	f.Add(ingestForm(f, [3]string{"other", "", "x"}))
	f.Add(ingestForm(f, [3]string{"file", "", strings.Repeat("z", 3000)}))
	f.Add([]byte("--idflowfuzzboundary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"q\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3Db\r\n--idflowfuzzboundary--\r\n"))
	f.Add([]byte("--idflowfuzzboundary--"))
	f.Add([]byte{})
	const limit = 2048
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := readForm(body, limit)
		if err != nil {
			var mbe *http.MaxBytesError
			if !errors.As(err, &mbe) && idflow.ErrorCode(err) != idflow.EINVALID {
				t.Fatalf("refusal has code %s: %v", idflow.ErrorCode(err), err)
			}
			if errors.As(err, &mbe) && len(body) <= limit {
				t.Fatalf("a %d-byte body hit the %d-byte limit", len(body), limit)
			}
			return
		}
		// Accepted: one file, no larger than the body, an app id within its bound.
		if len(body) > limit {
			t.Fatalf("accepted a %d-byte body over the %d-byte limit", len(body), limit)
		}
		if len(in.Content) > len(body) || len(in.AppID) > 128 {
			t.Fatalf("read more than was sent: %d content bytes, %d app id bytes from %d", len(in.Content), len(in.AppID), len(body))
		}
		if in.Content == nil {
			t.Fatalf("accepted a form without a file part")
		}
	})
}
