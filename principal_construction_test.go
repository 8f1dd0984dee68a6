package idflow_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/idflow/idflow"
)

// A Principal can only be built by the authentication layer,
// and there is no shared, default or anonymous user id anywhere. This test
// reads every non-test Go file of the module and reports, as file:line:
//
//   - outside auth/ and auth/authtest/: a composite literal of
//     idflow.Principal (Principal{…} inside package idflow; also as the
//     element of a slice, array or map literal, whose inner literals elide
//     the type), new(idflow.Principal), a conversion to it, a type declared
//     as or over it (an alias would hide the literals), or an assignment to
//     a field of a variable declared as a Principal (var p idflow.Principal;
//     p.UserID = …, a parameter, or the result of idflow.FromContext);
//   - outside auth/authtest/ and storetest/: an import of auth/authtest;
//   - outside service/ and storetest/: a call of idflow.NewAdminScope (the
//     admin rule — which role reaches which tenants — lives in service);
//   - anywhere: an import of internal/llmtest (the scripted model server
//     is for _test.go files only);
//   - anywhere: an identifier or string that seeds a shared identity
//     (DEFAULT_USER_ID, DefaultUserID and their spellings, "anonymous",
//     "mcp-user").
//
// The field-assignment check follows declarations within one file; it is
// a tripwire for the obvious forgeries, not a type checker.

const (
	modulePath   = "github.com/idflow/idflow"
	authtestPath = modulePath + "/auth/authtest"
	llmtestPath  = modulePath + "/internal/llmtest"
)

type violation struct {
	pos token.Position
	msg string
}

func (v violation) String() string {
	return fmt.Sprintf("%s:%d: %s", v.pos.Filename, v.pos.Line, v.msg)
}

// principalFields are the field names of idflow.Principal.
var principalFields = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeFor[idflow.Principal]()
	for i := range t.NumField() {
		m[t.Field(i).Name] = true
	}
	return m
}()

// principalSources are calls whose first result is an idflow.Principal.
var principalSources = map[string]bool{"FromContext": true, "FromSnapshot": true, "Authenticate": true, "VerifyToken": true}

// rules says which checks apply to a file at a module-relative path.
type rules struct {
	root             bool // the module root: package idflow itself
	principalAllowed bool // auth/, auth/authtest/
	authtestAllowed  bool // auth/authtest/, storetest/
	scopeAllowed     bool // service/, storetest/: may call idflow.NewAdminScope
}

func rulesFor(rel string) rules {
	dir := filepath.ToSlash(filepath.Dir(rel))
	return rules{
		root:             dir == ".",
		principalAllowed: dir == "auth" || dir == "auth/authtest",
		authtestAllowed:  dir == "auth/authtest" || dir == "storetest" || strings.HasPrefix(dir, "storetest/"),
		scopeAllowed:     dir == "service" || dir == "storetest",
	}
}

// checkSource parses src (named rel, module-relative) and returns its
// violations.
func checkSource(rel string, src []byte) ([]violation, error) {
	fset := token.NewFileSet()
	// Object resolution stays on: the field-assignment check follows
	// identifiers to their declarations.
	f, err := parser.ParseFile(fset, rel, src, 0)
	if err != nil {
		return nil, err
	}
	return checkFile(fset, f, rulesFor(rel)), nil
}

func checkFile(fset *token.FileSet, f *ast.File, r rules) []violation {
	var out []violation
	report := func(n ast.Node, format string, args ...any) {
		out = append(out, violation{fset.Position(n.Pos()), fmt.Sprintf(format, args...)})
	}

	// Which names denote package idflow, and whether a bare Principal does.
	qualifiers := map[string]bool{}
	bare := r.root && f.Name.Name == "idflow" // inside package idflow itself
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		switch path {
		case modulePath:
			switch {
			case imp.Name == nil:
				qualifiers["idflow"] = true
			case imp.Name.Name == ".":
				bare = true
			case imp.Name.Name != "_":
				qualifiers[imp.Name.Name] = true
			}
		case authtestPath:
			if !r.authtestAllowed {
				report(imp, "imports %s (only tests and storetest/ may)", authtestPath)
			}
		case llmtestPath:
			report(imp, "imports %s (only tests may)", llmtestPath)
		}
	}
	var isPrincipal func(e ast.Expr) bool
	isPrincipal = func(e ast.Expr) bool {
		switch e := e.(type) {
		case *ast.Ident:
			return bare && e.Name == "Principal"
		case *ast.SelectorExpr:
			x, ok := e.X.(*ast.Ident)
			return ok && qualifiers[x.Name] && e.Sel.Name == "Principal"
		case *ast.StarExpr:
			return isPrincipal(e.X)
		case *ast.ParenExpr:
			return isPrincipal(e.X)
		}
		return false
	}
	// elided reports the literals inside lit (of type typ, a slice, array or
	// map type) that elide their type where that type is a Principal:
	// []idflow.Principal{{UserID: "x"}}.
	var elided func(typ ast.Expr, lit *ast.CompositeLit)
	elided = func(typ ast.Expr, lit *ast.CompositeLit) {
		var key, elt ast.Expr
		switch t := ast.Unparen(typ).(type) {
		case *ast.ArrayType:
			elt = t.Elt
		case *ast.MapType:
			key, elt = t.Key, t.Value
		default:
			return
		}
		for _, e := range lit.Elts {
			var k, v ast.Expr = nil, e
			if kv, ok := e.(*ast.KeyValueExpr); ok {
				k, v = kv.Key, kv.Value
			}
			for _, pair := range [][2]ast.Expr{{key, k}, {elt, v}} {
				t, x := pair[0], pair[1]
				if cl, ok := x.(*ast.CompositeLit); ok && t != nil && cl.Type == nil {
					if isPrincipal(t) {
						report(cl, "composite literal of idflow.Principal (type elided; only package auth builds one)")
					} else {
						elided(t, cl)
					}
				}
			}
		}
	}
	// declaredPrincipal reports whether id was declared as a Principal.
	declaredPrincipal := func(id *ast.Ident) bool {
		if id.Obj == nil {
			return false
		}
		switch d := id.Obj.Decl.(type) {
		case *ast.Field:
			return isPrincipal(d.Type)
		case *ast.ValueSpec:
			if d.Type != nil {
				return isPrincipal(d.Type)
			}
		case *ast.AssignStmt:
			i := slices.IndexFunc(d.Lhs, func(e ast.Expr) bool { l, ok := e.(*ast.Ident); return ok && l.Name == id.Name })
			if i < 0 {
				return false
			}
			var rhs ast.Expr
			switch {
			case len(d.Rhs) == len(d.Lhs):
				rhs = d.Rhs[i]
			case len(d.Rhs) == 1 && i == 0:
				rhs = d.Rhs[0]
			default:
				return false
			}
			switch x := ast.Unparen(rhs).(type) {
			case *ast.CallExpr:
				var name string
				switch fn := x.Fun.(type) {
				case *ast.Ident:
					name = fn.Name
				case *ast.SelectorExpr:
					name = fn.Sel.Name
				}
				return principalSources[name]
			case *ast.SelectorExpr:
				return x.Sel.Name == "Principal" // tok.Principal
			case *ast.CompositeLit:
				return isPrincipal(x.Type)
			}
		}
		return false
	}

	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.Ident:
			if seedsSharedIdentity(n.Name) {
				report(n, "identifier %s seeds a shared user id", n.Name)
			}
		case *ast.BasicLit:
			if n.Kind == token.STRING {
				if s, err := strconv.Unquote(n.Value); err == nil && (seedsSharedIdentity(s) || sharedUserString(s)) {
					report(n, "string %s seeds a shared user id", n.Value)
				}
			}
		}
		if call, ok := n.(*ast.CallExpr); ok && !r.scopeAllowed {
			switch fn := call.Fun.(type) {
			case *ast.SelectorExpr:
				if x, ok := fn.X.(*ast.Ident); ok && qualifiers[x.Name] && fn.Sel.Name == "NewAdminScope" {
					report(call, "call of idflow.NewAdminScope (only package service builds an admin scope)")
				}
			case *ast.Ident:
				if bare && fn.Name == "NewAdminScope" {
					report(call, "call of idflow.NewAdminScope (only package service builds an admin scope)")
				}
			}
		}
		if r.principalAllowed {
			return true
		}
		switch n := n.(type) {
		case *ast.CompositeLit:
			if n.Type != nil && isPrincipal(n.Type) {
				report(n, "composite literal of idflow.Principal (only package auth builds one)")
			} else if n.Type != nil {
				elided(n.Type, n)
			}
		case *ast.CallExpr:
			if fn, ok := n.Fun.(*ast.Ident); ok && fn.Name == "new" && len(n.Args) == 1 && isPrincipal(n.Args[0]) {
				report(n, "new(idflow.Principal) (only package auth builds one)")
			} else if isPrincipal(n.Fun) {
				report(n, "conversion to idflow.Principal (only package auth builds one)")
			}
		case *ast.TypeSpec:
			if isPrincipal(n.Type) {
				report(n, "type %s declared as idflow.Principal", n.Name.Name)
			}
		case *ast.AssignStmt:
			for _, lhs := range n.Lhs {
				sel, ok := ast.Unparen(lhs).(*ast.SelectorExpr)
				if !ok || !principalFields[sel.Sel.Name] {
					continue
				}
				if id, ok := ast.Unparen(sel.X).(*ast.Ident); ok && declaredPrincipal(id) {
					report(lhs, "assignment to %s.%s of an idflow.Principal (only package auth sets identity)", id.Name, sel.Sel.Name)
				}
			}
		}
		return true
	})
	return out
}

// seedsSharedIdentity matches DEFAULT_USER_ID, DefaultUserID,
// defaultUserId and the like, as an identifier or inside a string.
func seedsSharedIdentity(s string) bool {
	norm := strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s))
	return strings.Contains(norm, "defaultuserid")
}

// sharedUserString matches the literal shared user ids of the seed systems.
func sharedUserString(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "anonymous", "mcp-user":
		return true
	}
	return false
}

// scanTree checks every non-test .go file under root, skipping what the go
// tool skips (testdata, vendor, dot and underscore directories).
func scanTree(t *testing.T, root string) (files []string, out []violation) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || name == "vendor" || name == "node_modules" ||
				strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		vs, err := checkSource(filepath.ToSlash(rel), src)
		if err != nil {
			// A file another change left unparsable is that change's
			// problem; say so without hiding the rest of the report.
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		files = append(files, filepath.ToSlash(rel))
		out = append(out, vs...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, out
}

func TestPrincipalIsBuiltOnlyByAuth(t *testing.T) {
	files, violations := scanTree(t, ".")
	for _, must := range []string{"principal.go", "auth/verifier.go", "auth/authtest/principals.go"} {
		if !slices.Contains(files, must) {
			t.Fatalf("the walk missed %s (scanned %d files)", must, len(files))
		}
	}
	for _, v := range violations {
		t.Errorf("%s", v)
	}
}

// TestPrincipalDetectorCatchesPlantedExamples proves the detector works:
// every line marked "// want" in a planted source must be reported, and no
// other line.
func TestPrincipalDetectorCatchesPlantedExamples(t *testing.T) {
	cases := []struct {
		rel, src string
	}{
		{"httpapi/planted.go", `package httpapi

import (
	"context"
	"net/http"
	"os"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest" // want
	"github.com/idflow/idflow/internal/llmtest" // want
)

const DefaultUserID = "u-1" // want

var DEFAULT_USER_ID = os.Getenv("IDFLOW_DEFAULT_USER_ID") // want

func literal(r *http.Request) idflow.Principal {
	p := idflow.Principal{UserID: r.URL.Query().Get("user")} // want
	_ = &idflow.Principal{} // want
	_ = idflow.Principal{} // want
	_ = new(idflow.Principal) // want
	_ = []idflow.Principal{{UserID: "a"}, {UserID: "b"}} // want
	_ = map[string]*idflow.Principal{"a": {UserID: "a"}} // want
	_ = authtest.User("alice", "t")
	_, _ = idflow.NewAdminScope(p, idflow.AdminRoles{Platform: "user"}) // want
	_ = llmtest.New
	return p
}

type forged struct{ UserID string }

type alias = idflow.Principal // want

type lookalike idflow.Principal // want

func convert(f forged) {
	_ = idflow.Principal(lookalike{}) // want
}

func mutate(ctx context.Context, r *http.Request, param idflow.Principal) {
	var zero idflow.Principal
	zero.UserID = r.Header.Get("X-User") // want
	p, _ := idflow.FromContext(ctx)
	p.UserID = "someone-else" // want
	param.Roles = append(param.Roles, "admin") // want
	pp := &param
	_ = pp
	var ptr *idflow.Principal
	ptr.TenantID = "t-two" // want
	_ = "anonymous" // want
	_ = "MCP-User" // want
	_ = "anonymous users are refused"
}
`},
		{"cmd/idflow/planted.go", `package main

import (
	id "github.com/idflow/idflow"
)

func f() {
	_ = id.Principal{UserID: "x"} // want
	var defaultUserId = "x" // want
	_ = defaultUserId // want
}
`},
		{"internal/planted/dot.go", `package planted

import . "github.com/idflow/idflow"

func f() { _ = Principal{UserID: "x"} } // want
`},
		{"planted.go", `package idflow

func forge() Principal { return Principal{UserID: "x"} } // want
`},
		{"storetest/planted.go", `package storetest

import (
	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

func users() []idflow.Principal {
	p := idflow.Principal{} // want
	_ = p
	_, _ = idflow.NewAdminScope(authtest.User("root", "t", "platform"), idflow.AdminRoles{Platform: "platform"})
	return []idflow.Principal{authtest.User("alice", "t-one")}
}
`},
	}
	for _, tc := range cases {
		t.Run(tc.rel, func(t *testing.T) {
			vs, err := checkSource(tc.rel, []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			want := map[int]bool{}
			for i, line := range strings.Split(tc.src, "\n") {
				if strings.Contains(line, "// want") {
					want[i+1] = true
				}
			}
			got := map[int]bool{}
			for _, v := range vs {
				got[v.pos.Line] = true
				if v.pos.Filename != tc.rel {
					t.Errorf("violation names %q, want %q", v.pos.Filename, tc.rel)
				}
				if !want[v.pos.Line] {
					t.Errorf("false positive: %s", v)
				}
			}
			for line := range want {
				if !got[line] {
					t.Errorf("%s:%d: planted violation not detected", tc.rel, line)
				}
			}
		})
	}
	t.Run("clean code passes", func(t *testing.T) {
		src := `package httpapi

import (
	"context"

	"github.com/idflow/idflow"
)

func handler(ctx context.Context, p idflow.Principal, a idflow.App) (out idflow.Principal, err error) {
	owner, err := p.Owner()
	if err != nil {
		return out, err
	}
	a.UserID = owner // an App, not a Principal
	var zero idflow.Principal
	_ = zero.UserID
	q, ok := idflow.FromContext(ctx)
	_ = ok && q.HasRole("admin")
	s := p.Snapshot()
	s.UserID = p.UserID // a Snapshot, not a Principal
	log := map[string]string{"user": p.UserID}
	_ = log
	return p, nil
}
`
		vs, err := checkSource("httpapi/clean.go", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			t.Errorf("false positive: %s", v)
		}
	})
	t.Run("auth may build Principals", func(t *testing.T) {
		src := `package auth

import "github.com/idflow/idflow"

func build() idflow.Principal { var p idflow.Principal; p.UserID = "x"; return idflow.Principal{UserID: p.UserID} }
`
		for _, rel := range []string{"auth/build.go", "auth/authtest/build.go"} {
			vs, err := checkSource(rel, []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) != 0 {
				t.Errorf("%s: %v", rel, vs)
			}
		}
		// …but not a package merely named like it elsewhere.
		if vs, _ := checkSource("internal/auth/build.go", []byte(src)); len(vs) != 2 {
			t.Errorf("internal/auth: %d violations, want 2: %v", len(vs), vs)
		}
	})
}
