package scim

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	"github.com/idflow/idflow"
)

// Doc is a SCIM resource as JSON: attribute names as the client spelled
// them (SCIM compares them case-insensitively: find, set, remove do).
type Doc map[string]any

// parseDoc reads a JSON object; numbers stay json.Number.
func parseDoc(body []byte) (Doc, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var d Doc
	if err := dec.Decode(&d); err != nil || d == nil {
		return nil, invalid("invalidSyntax", "the body must be a JSON object")
	}
	if dec.More() {
		return nil, invalid("invalidSyntax", "the body must be one JSON object")
	}
	return d, nil
}

// key answers the key of d that names attr, case-insensitively.
func (d Doc) key(attr string) (string, bool) {
	if _, ok := d[attr]; ok {
		return attr, true
	}
	for k := range d {
		if strings.EqualFold(k, attr) {
			return k, true
		}
	}
	return "", false
}

func (d Doc) get(attr string) (any, bool) {
	k, ok := d.key(attr)
	if !ok {
		return nil, false
	}
	return d[k], true
}

// set stores v under attr, replacing any spelling of it.
func (d Doc) set(attr string, v any) {
	if k, ok := d.key(attr); ok {
		delete(d, k)
	}
	d[canonical(attr)] = v
}

func (d Doc) remove(attr string) {
	if k, ok := d.key(attr); ok {
		delete(d, k)
	}
}

// str answers attr as a string ("" when absent or null); another type is
// invalidValue.
func (d Doc) str(attr string) (string, error) {
	v, ok := d.get(attr)
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", invalid("invalidValue", "%s must be a string", attr)
	}
	return s, nil
}

// canonicalNames spells the attributes of the core and enterprise schemas
// as RFC 7643 does, so that a document reads back the same whichever case
// a client wrote.
var canonicalNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"schemas", "id", "externalId", "meta", "userName", "name", "formatted", "familyName", "givenName",
		"middleName", "honorificPrefix", "honorificSuffix", "displayName", "nickName", "profileUrl", "title", "userType",
		"preferredLanguage", "locale", "timezone", "active", "password", "emails", "phoneNumbers", "ims", "photos",
		"addresses", "streetAddress", "locality", "region", "postalCode", "country", "groups", "entitlements", "roles",
		"x509Certificates", "value", "display", "type", "primary", "members", "employeeNumber", "costCenter",
		"organization", "division", "department", "manager", "$ref",
		SchemaUser, SchemaGroup, SchemaEnterprise} {
		m[strings.ToLower(n)] = n
	}
	return m
}()

func canonical(attr string) string {
	if c, ok := canonicalNames[strings.ToLower(attr)]; ok {
		return c
	}
	return attr
}

// serverOwned are what a client may send but never sets: idflow answers
// them itself. password is never stored (idflow signs nobody in with one).
var serverOwned = []string{"id", "meta", "password", "groups"}

// asBool reads a boolean as SCIM clients send it: true/false, or — Entra
// ID before its aadOptscim062020 flag — the strings "True"/"False".
func asBool(attr string, v any) (bool, error) {
	switch b := v.(type) {
	case bool:
		return b, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(b)) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, invalid("invalidValue", "%s must be a boolean", attr)
}

// userFrom builds the directory user of a User document: the fields idflow
// indexes, and the rest kept as sent (minus what the server owns).
func userFrom(d Doc) (idflow.DirectoryUser, error) {
	var u idflow.DirectoryUser
	var err error
	if u.UserName, err = d.str("userName"); err != nil {
		return u, err
	}
	if u.ExternalID, err = d.str("externalId"); err != nil {
		return u, err
	}
	if u.DisplayName, err = d.str("displayName"); err != nil {
		return u, err
	}
	u.Active = true // RFC 7643: a user without active is not disabled
	if v, ok := d.get("active"); ok && v != nil {
		if u.Active, err = asBool("active", v); err != nil {
			return u, err
		}
	}
	attrs := Doc{}
	for k, v := range d {
		attrs[canonical(k)] = v
	}
	for _, k := range append([]string{"active"}, serverOwned...) {
		attrs.remove(k)
	}
	if u.Attributes, err = json.Marshal(attrs); err != nil {
		return u, invalid("invalidValue", "the user's attributes cannot be stored")
	}
	return u, nil
}

// ParseUser reads a User document (POST, PUT).
func ParseUser(body []byte) (idflow.DirectoryUser, error) {
	d, err := parseDoc(body)
	if err != nil {
		return idflow.DirectoryUser{}, err
	}
	return userFrom(d)
}

// userDoc is u's stored document with what idflow answers itself: the
// patchable whole of u.
func userDoc(u idflow.DirectoryUser) Doc {
	d := Doc{}
	if len(u.Attributes) > 0 {
		dec := json.NewDecoder(bytes.NewReader(u.Attributes))
		dec.UseNumber()
		_ = dec.Decode(&d) // written by userFrom: always an object
		if d == nil {
			d = Doc{}
		}
	}
	d.set("userName", u.UserName)
	if u.ExternalID != "" {
		d.set("externalId", u.ExternalID)
	} else {
		d.remove("externalId")
	}
	if u.DisplayName != "" {
		d.set("displayName", u.DisplayName)
	}
	d.set("active", u.Active)
	return d
}

type meta struct {
	ResourceType string `json:"resourceType"`
	Created      string `json:"created"`
	LastModified string `json:"lastModified"`
	Version      string `json:"version"`
	Location     string `json:"location"`
}

func metaOf(kind, base, id string, version int64, created, updated time.Time) meta {
	path := "/Users/"
	if kind == "Group" {
		path = "/Groups/"
	}
	return meta{ResourceType: kind, Created: created.UTC().Format(time.RFC3339Nano), LastModified: updated.UTC().Format(time.RFC3339Nano),
		Version: ETag(version), Location: base + path + id}
}

// UserResource answers u as a SCIM User; base is the /scim/v2 URL.
func UserResource(u idflow.DirectoryUser, base string) Doc {
	d := userDoc(u)
	if _, ok := d.get("schemas"); !ok {
		d["schemas"] = []any{SchemaUser}
	}
	d["id"] = u.ID
	d["meta"] = metaOf("User", base, u.ID, u.Version, u.CreatedAt, u.UpdatedAt)
	return d
}

// groupFrom builds the directory group of a Group document.
func groupFrom(d Doc) (idflow.DirectoryGroup, error) {
	var g idflow.DirectoryGroup
	var err error
	if g.DisplayName, err = d.str("displayName"); err != nil {
		return g, err
	}
	if g.ExternalID, err = d.str("externalId"); err != nil {
		return g, err
	}
	if v, ok := d.get("members"); ok && v != nil {
		if g.Members, err = membersOf(v); err != nil {
			return g, err
		}
	}
	attrs := Doc{}
	for k, v := range d {
		attrs[canonical(k)] = v
	}
	for _, k := range append([]string{"members", "displayName", "externalId"}, serverOwned...) {
		attrs.remove(k)
	}
	if g.Attributes, err = json.Marshal(attrs); err != nil {
		return g, invalid("invalidValue", "the group's attributes cannot be stored")
	}
	return g, nil
}

// membersOf reads a members value: an array of {value} objects (or one).
func membersOf(v any) ([]idflow.GroupMember, error) {
	items, ok := v.([]any)
	if !ok {
		items = []any{v}
	}
	if len(items) > idflow.MaxGroupMembers {
		return nil, errorf(idflow.ETOOLARGE, "tooMany", "a group has at most %d members", idflow.MaxGroupMembers)
	}
	out := make([]idflow.GroupMember, 0, len(items))
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return nil, invalid("invalidValue", "a member must be an object with a value")
		}
		val, _ := Doc(m).get("value")
		s, ok := val.(string)
		if !ok || strings.TrimSpace(s) == "" {
			return nil, invalid("invalidValue", "a member must have a string value (the user's id)")
		}
		out = append(out, idflow.GroupMember{Value: s})
	}
	return out, nil
}

// ParseGroup reads a Group document (POST, PUT).
func ParseGroup(body []byte) (idflow.DirectoryGroup, error) {
	d, err := parseDoc(body)
	if err != nil {
		return idflow.DirectoryGroup{}, err
	}
	return groupFrom(d)
}

type memberOut struct {
	Value   string `json:"value"`
	Ref     string `json:"$ref"`
	Display string `json:"display,omitempty"`
}

// GroupResource answers g as a SCIM Group; members only when withMembers.
func GroupResource(g idflow.DirectoryGroup, base string, withMembers bool) Doc {
	d := Doc{}
	if len(g.Attributes) > 0 {
		_ = json.Unmarshal(g.Attributes, &d)
		if d == nil {
			d = Doc{}
		}
	}
	if _, ok := d.get("schemas"); !ok {
		d["schemas"] = []any{SchemaGroup}
	}
	d["id"] = g.ID
	d.set("displayName", g.DisplayName)
	if g.ExternalID != "" {
		d.set("externalId", g.ExternalID)
	}
	if withMembers {
		ms := make([]memberOut, 0, len(g.Members))
		for _, m := range g.Members {
			ms = append(ms, memberOut{Value: m.Value, Ref: base + "/Users/" + m.Value, Display: m.Display})
		}
		d["members"] = ms
	}
	d["meta"] = metaOf("Group", base, g.ID, g.Version, g.CreatedAt, g.UpdatedAt)
	return d
}
