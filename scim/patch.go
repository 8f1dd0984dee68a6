package scim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	filter "github.com/scim2/filter-parser/v2"

	"github.com/idflow/idflow"
)

// op is one PATCH operation (RFC 7644 §3.5.2), op lower-cased: Entra ID
// sends "Add", "Replace", "Remove".
type op struct {
	op    string
	path  string
	value any
	has   bool // value was present
}

// parsePatch reads a PatchOp document.
func parsePatch(body []byte) ([]op, error) {
	var doc struct {
		Schemas    []string          `json:"schemas"`
		Operations []json.RawMessage `json:"Operations"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, invalid("invalidSyntax", "the body must be a SCIM PatchOp document")
	}
	if len(doc.Operations) == 0 {
		return nil, invalid("invalidSyntax", "Operations must list at least one operation")
	}
	if len(doc.Operations) > MaxOperations {
		return nil, errorf(idflow.ETOOLARGE, "tooMany", "at most %d operations in one PATCH", MaxOperations)
	}
	out := make([]op, 0, len(doc.Operations))
	for i, raw := range doc.Operations {
		var o struct {
			Op    string          `json:"op"`
			Path  *string         `json:"path"`
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, invalid("invalidSyntax", "operation %d is not an object with op, path and value", i+1)
		}
		x := op{op: strings.ToLower(strings.TrimSpace(o.Op))}
		if o.Path != nil {
			x.path = strings.TrimSpace(*o.Path)
		}
		switch x.op {
		case "add", "replace", "remove":
		default:
			return nil, invalid("invalidSyntax", "operation %d: op must be add, replace or remove", i+1)
		}
		if len(o.Value) > 0 && !bytes.Equal(bytes.TrimSpace(o.Value), []byte("null")) {
			dec := json.NewDecoder(bytes.NewReader(o.Value))
			dec.UseNumber()
			if err := dec.Decode(&x.value); err != nil {
				return nil, invalid("invalidSyntax", "operation %d: value is not JSON", i+1)
			}
			x.has = true
		}
		if x.op != "remove" && !x.has {
			return nil, invalid("invalidValue", "operation %d: %s needs a value", i+1, x.op)
		}
		if x.op == "remove" && x.path == "" {
			return nil, invalid("noTarget", "operation %d: remove needs a path", i+1)
		}
		out = append(out, x)
	}
	return out, nil
}

// atOp names the operation (from 1) in err's message.
func atOp(i int, err error) error {
	t := TypeOf(err)
	code := idflow.ErrorCode(err)
	return errorf(code, t, "operation %d: %s", i+1, idflow.ErrorMessage(err))
}

// PatchUser applies a PatchOp document to u and answers the user it
// makes (id, version and times kept).
func PatchUser(u idflow.DirectoryUser, body []byte) (idflow.DirectoryUser, error) {
	ops, err := parsePatch(body)
	if err != nil {
		return u, err
	}
	d := userDoc(u)
	for i, o := range ops {
		if err := apply(d, o, SchemaUser); err != nil {
			return u, atOp(i, err)
		}
	}
	nu, err := userFrom(d)
	if err != nil {
		return u, err
	}
	nu.ID, nu.TenantID, nu.Version, nu.CreatedAt, nu.UpdatedAt = u.ID, u.TenantID, u.Version, u.CreatedAt, u.UpdatedAt
	return nu, nil
}

// PatchGroup applies a PatchOp document to g (read without its members).
func PatchGroup(g idflow.DirectoryGroup, body []byte) (idflow.GroupChange, error) {
	ops, err := parsePatch(body)
	if err != nil {
		return idflow.GroupChange{}, err
	}
	d := Doc{}
	if len(g.Attributes) > 0 {
		dec := json.NewDecoder(bytes.NewReader(g.Attributes))
		dec.UseNumber()
		_ = dec.Decode(&d)
		if d == nil {
			d = Doc{}
		}
	}
	d.set("displayName", g.DisplayName)
	if g.ExternalID != "" {
		d.set("externalId", g.ExternalID)
	}
	ch := idflow.GroupChange{}
	ms := &memberSet{ch: &ch}
	for i, o := range ops {
		if err := patchGroupOp(d, o, ms); err != nil {
			return idflow.GroupChange{}, atOp(i, err)
		}
	}
	ng, err := groupFrom(d)
	if err != nil {
		return idflow.GroupChange{}, err
	}
	ng.ID, ng.TenantID, ng.Version, ng.CreatedAt, ng.UpdatedAt = g.ID, g.TenantID, g.Version, g.CreatedAt, g.UpdatedAt
	ch.DocChanged = ng.DisplayName != g.DisplayName || ng.ExternalID != g.ExternalID || !bytes.Equal(orEmpty(ng.Attributes), orEmpty(g.Attributes))
	ch.Group = ng
	ms.finish()
	return ch, nil
}

// orEmpty is a stored document: none is the empty object.
func orEmpty(b []byte) []byte {
	if len(b) == 0 {
		return []byte("{}")
	}
	return b
}

func patchGroupOp(d Doc, o op, ms *memberSet) error {
	if o.path == "" {
		obj, ok := o.value.(map[string]any)
		if !ok {
			return invalid("invalidValue", "an operation without a path needs an object value")
		}
		for k, v := range obj {
			if echoed(k) {
				continue
			}
			if err := patchGroupOp(d, op{op: o.op, path: k, value: v, has: true}, ms); err != nil {
				return err
			}
		}
		return nil
	}
	p, err := parsePath(o.path)
	if err != nil {
		return err
	}
	if !strings.EqualFold(p.AttributePath.AttributeName, "members") || (p.AttributePath.URI() != "" && !strings.EqualFold(p.AttributePath.URI(), SchemaGroup)) {
		return apply(d, o, SchemaGroup)
	}
	if p.AttributePath.SubAttribute != nil || p.SubAttribute != nil {
		return invalid("invalidPath", "members have no sub-attribute to change here")
	}
	if p.ValueExpression != nil {
		// members[value eq "…"]: Okta's and RFC 7644's removal.
		id, ok := memberFilterValue(p.ValueExpression)
		if !ok {
			return invalid("invalidFilter", `select members by value: members[value eq "<id>"]`)
		}
		switch o.op {
		case "remove":
			ms.remove(id)
		default:
			ms.add(id)
		}
		return nil
	}
	var vals []idflow.GroupMember
	if o.has {
		if vals, err = membersOf(o.value); err != nil {
			return err
		}
	}
	switch o.op {
	case "add":
		for _, m := range vals {
			ms.add(m.Value)
		}
	case "replace":
		ms.replace(vals)
	case "remove":
		if !o.has {
			ms.replace(nil) // remove every member
			return nil
		}
		// Entra ID removes members with a value list on path members.
		for _, m := range vals {
			ms.remove(m.Value)
		}
	}
	return nil
}

// memberFilterValue answers the id of `value eq "<id>"`.
func memberFilterValue(e filter.Expression) (string, bool) {
	a, ok := e.(*filter.AttributeExpression)
	if !ok || a.Operator != filter.EQ || !strings.EqualFold(a.AttributePath.AttributeName, "value") || a.AttributePath.SubAttribute != nil {
		return "", false
	}
	s, ok := a.CompareValue.(string)
	return s, ok && s != ""
}

// memberSet follows the member operations of one PATCH in order.
type memberSet struct {
	ch          *idflow.GroupChange
	whole       []string // after a replace: the whole list, in order
	adds, drops map[string]bool
}

func (m *memberSet) replace(vals []idflow.GroupMember) {
	m.ch.ReplaceMembers = true
	m.whole = m.whole[:0]
	for _, v := range vals {
		m.addWhole(v.Value)
	}
	m.adds, m.drops = nil, nil
}

func (m *memberSet) addWhole(id string) {
	for _, w := range m.whole {
		if w == id {
			return
		}
	}
	m.whole = append(m.whole, id)
}

func (m *memberSet) add(id string) {
	if m.ch.ReplaceMembers {
		m.addWhole(id)
		return
	}
	if m.adds == nil {
		m.adds, m.drops = map[string]bool{}, map[string]bool{}
	}
	delete(m.drops, id)
	m.adds[id] = true
}

func (m *memberSet) remove(id string) {
	if m.ch.ReplaceMembers {
		for i, w := range m.whole {
			if w == id {
				m.whole = append(m.whole[:i], m.whole[i+1:]...)
				break
			}
		}
		return
	}
	if m.adds == nil {
		m.adds, m.drops = map[string]bool{}, map[string]bool{}
	}
	delete(m.adds, id)
	m.drops[id] = true
}

func (m *memberSet) finish() {
	if m.ch.ReplaceMembers {
		m.ch.Members = make([]idflow.GroupMember, 0, len(m.whole))
		for _, id := range m.whole {
			m.ch.Members = append(m.ch.Members, idflow.GroupMember{Value: id})
		}
		return
	}
	for id := range m.adds {
		m.ch.Add = append(m.ch.Add, id)
	}
	for id := range m.drops {
		m.ch.Remove = append(m.ch.Remove, id)
	}
	slices.Sort(m.ch.Add)
	slices.Sort(m.ch.Remove)
}

// parsePath is the library's path parser; a panic on odd input is a
// refusal.
func parsePath(raw string) (p filter.Path, err error) {
	defer func() {
		if recover() != nil {
			p, err = filter.Path{}, invalid("invalidPath", "the path is not a SCIM path")
		}
	}()
	if len(raw) > MaxFilterLen {
		return p, invalid("invalidPath", "the path is longer than %d bytes", MaxFilterLen)
	}
	p, err = filter.ParsePath([]byte(raw))
	if err != nil {
		return p, invalid("invalidPath", "the path %q is not a SCIM path", raw)
	}
	return p, nil
}

// apply applies one operation to d, a resource of schema.
func apply(d Doc, o op, schema string) error {
	if o.path == "" {
		obj, ok := o.value.(map[string]any)
		if !ok {
			return invalid("invalidValue", "an operation without a path needs an object value")
		}
		for k, v := range obj {
			if echoed(k) {
				continue
			}
			if strings.HasPrefix(strings.ToLower(k), "urn:") && !strings.EqualFold(k, schema) {
				if ext, ok := v.(map[string]any); ok && isSchemaURN(k) {
					// {"urn:…:enterprise:2.0:User": {"department": "…"}}
					for sk, sv := range ext {
						if err := apply(d, op{op: o.op, path: k + ":" + sk, value: sv, has: true}, schema); err != nil {
							return err
						}
					}
					continue
				}
			}
			// Keys may be paths themselves ("name.givenName", Entra's
			// form) or URN-prefixed attributes.
			if err := apply(d, op{op: o.op, path: k, value: v, has: true}, schema); err != nil {
				return err
			}
		}
		return nil
	}
	p, err := parsePath(o.path)
	if err != nil {
		return err
	}
	container := d
	if uri := p.AttributePath.URI(); uri != "" && !strings.EqualFold(uri, schema) {
		ext, _ := d.get(uri)
		m, ok := ext.(map[string]any)
		if !ok {
			if o.op == "remove" {
				return nil
			}
			m = map[string]any{}
			d.set(uri, m)
		}
		container = Doc(m)
	}
	attr := p.AttributePath.AttributeName
	for _, owned := range serverOwned {
		if strings.EqualFold(attr, owned) && container.isRoot(d) {
			if strings.EqualFold(owned, "password") {
				return nil // accepted and dropped: idflow keeps no password
			}
			return invalid("mutability", "%s is set by the service provider", attr)
		}
	}
	if strings.EqualFold(attr, "schemas") {
		return nil
	}
	switch {
	case p.ValueExpression != nil:
		return applyFiltered(container, o, attr, p.ValueExpression, p.SubAttributeName())
	case p.AttributePath.SubAttributeName() != "":
		sub := p.AttributePath.SubAttributeName()
		cur, _ := container.get(attr)
		m, ok := cur.(map[string]any)
		if !ok {
			if o.op == "remove" {
				return nil
			}
			m = map[string]any{}
		}
		if o.op == "remove" {
			Doc(m).remove(sub)
		} else {
			Doc(m).set(sub, o.value)
		}
		container.set(attr, m)
		return nil
	}
	cur, exists := container.get(attr)
	switch o.op {
	case "remove":
		arr, isArr := cur.([]any)
		if o.has && isArr {
			// A value list on a multi-valued attribute removes those
			// values (Entra ID's form).
			drop, _ := o.value.([]any)
			if drop == nil {
				drop = []any{o.value}
			}
			kept := arr[:0:0]
			for _, el := range arr {
				if !containsValue(drop, el) {
					kept = append(kept, el)
				}
			}
			container.set(attr, kept)
			return nil
		}
		container.remove(attr)
	case "add":
		arr, isArr := cur.([]any)
		vals, valArr := o.value.([]any)
		switch {
		case isArr || (valArr && !exists):
			if !valArr {
				vals = []any{o.value}
			}
			for _, v := range vals {
				if !containsValue(arr, v) {
					arr = append(arr, v)
				}
			}
			container.set(attr, arr)
		default:
			container.set(attr, merged(cur, o.value))
		}
	case "replace":
		if _, isArr := cur.([]any); isArr {
			if _, valArr := o.value.([]any); !valArr {
				container.set(attr, []any{o.value})
				return nil
			}
		}
		container.set(attr, merged(cur, o.value))
	}
	return nil
}

// echoed reports whether a key of a path-less value object is one a
// client echoes from the resource (Okta sends the group's id with its new
// displayName): read-only, ignored there, refused as an explicit path.
func echoed(k string) bool {
	return strings.EqualFold(k, "id") || strings.EqualFold(k, "meta") || strings.EqualFold(k, "schemas")
}

// isRoot reports whether c is the resource itself, not an extension.
func (c Doc) isRoot(d Doc) bool { return reflect.ValueOf(c).Pointer() == reflect.ValueOf(d).Pointer() }

func isSchemaURN(k string) bool {
	return strings.HasPrefix(strings.ToLower(k), "urn:ietf:params:scim:schemas:")
}

// merged answers v set over cur: objects merge their sub-attributes (as
// add and replace of a complex attribute do), anything else is v.
func merged(cur, v any) any {
	cm, ok1 := cur.(map[string]any)
	vm, ok2 := v.(map[string]any)
	if !ok1 || !ok2 {
		return v
	}
	out := Doc{}
	for k, x := range cm {
		out[k] = x
	}
	for k, x := range vm {
		out.set(k, x)
	}
	return map[string]any(out)
}

// applyFiltered applies o to the elements of the multi-valued attr that
// match f: attr[f] or attr[f].sub. A replace or add that matches nothing
// adds an element made of f's `eq` terms (and sub), as Entra ID expects of
// emails[type eq "work"].value.
func applyFiltered(d Doc, o op, attr string, f filter.Expression, sub string) error {
	cur, _ := d.get(attr)
	arr, _ := cur.([]any)
	matched := false
	kept := make([]any, 0, len(arr))
	for _, el := range arr {
		m, ok := el.(map[string]any)
		if !ok || !matches(Doc(m), f) {
			kept = append(kept, el)
			continue
		}
		matched = true
		switch {
		case o.op == "remove" && sub == "":
			continue // drop the element
		case o.op == "remove":
			Doc(m).remove(sub)
		case sub != "":
			Doc(m).set(sub, o.value)
		default:
			vm, ok := o.value.(map[string]any)
			if !ok {
				return invalid("invalidValue", "%s[…] needs an object value", attr)
			}
			m = merged(m, vm).(map[string]any)
		}
		kept = append(kept, m)
	}
	if !matched && o.op != "remove" {
		el := Doc{}
		if !eqTerms(f, el) {
			return invalid("noTarget", "no %s matches the filter", attr)
		}
		if sub != "" {
			el.set(sub, o.value)
		} else if vm, ok := o.value.(map[string]any); ok {
			el = Doc(merged(map[string]any(el), vm).(map[string]any))
		} else {
			return invalid("invalidValue", "%s[…] needs an object value", attr)
		}
		kept = append(kept, map[string]any(el))
	}
	d.set(attr, kept)
	return nil
}

// eqTerms copies f's `eq` terms (joined by and) into el; false when f is
// anything else.
func eqTerms(f filter.Expression, el Doc) bool {
	switch e := f.(type) {
	case *filter.AttributeExpression:
		if e.Operator != filter.EQ || e.AttributePath.SubAttribute != nil {
			return false
		}
		el.set(e.AttributePath.AttributeName, e.CompareValue)
		return true
	case *filter.LogicalExpression:
		return e.Operator == filter.AND && eqTerms(e.Left, el) && eqTerms(e.Right, el)
	}
	return false
}

// matches evaluates a value filter on one element of a multi-valued
// attribute. Strings compare case-insensitively (the sub-attributes
// filtered on — type, value, display — are caseExact false in RFC 7643,
// but value; ids here are lower-case).
func matches(el Doc, f filter.Expression) bool {
	switch e := f.(type) {
	case *filter.LogicalExpression:
		if e.Operator == filter.AND {
			return matches(el, e.Left) && matches(el, e.Right)
		}
		return matches(el, e.Left) || matches(el, e.Right)
	case *filter.NotExpression:
		return !matches(el, e.Expression)
	case *filter.AttributeExpression:
		v, ok := el.get(e.AttributePath.AttributeName)
		if e.Operator == filter.PR {
			return ok && v != nil && v != ""
		}
		if !ok {
			return e.Operator == filter.NE
		}
		return compare(v, e.Operator, e.CompareValue)
	}
	return false
}

func compare(v any, op filter.CompareOperator, want any) bool {
	if b, ok := want.(bool); ok {
		got, err := asBool("", v)
		if err != nil {
			return op == filter.NE
		}
		return (got == b) == (op == filter.EQ)
	}
	ws, ok := want.(string)
	if !ok {
		ws = fmt.Sprint(want)
	}
	vs, ok := v.(string)
	if !ok {
		vs = fmt.Sprint(v)
	}
	vs, ws = strings.ToLower(vs), strings.ToLower(ws)
	switch op {
	case filter.EQ:
		return vs == ws
	case filter.NE:
		return vs != ws
	case filter.CO:
		return strings.Contains(vs, ws)
	case filter.SW:
		return strings.HasPrefix(vs, ws)
	case filter.EW:
		return strings.HasSuffix(vs, ws)
	}
	return false
}

// containsValue reports whether vals holds v: equal objects, or objects
// with the same "value".
func containsValue(vals []any, v any) bool {
	for _, x := range vals {
		if reflect.DeepEqual(x, v) {
			return true
		}
		xm, ok1 := x.(map[string]any)
		vm, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			xv, okx := Doc(xm).get("value")
			vv, okv := Doc(vm).get("value")
			if okx && okv && reflect.DeepEqual(xv, vv) {
				return true
			}
		}
	}
	return false
}
