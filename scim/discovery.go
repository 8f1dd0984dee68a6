package scim

// The discovery documents (RFC 7644 §4): what this service provider
// supports, so a client configures itself instead of guessing.

type supported struct {
	Supported bool `json:"supported"`
}

type filterSupport struct {
	Supported  bool `json:"supported"`
	MaxResults int  `json:"maxResults"`
}

type bulkSupport struct {
	Supported      bool `json:"supported"`
	MaxOperations  int  `json:"maxOperations"`
	MaxPayloadSize int  `json:"maxPayloadSize"`
}

type authScheme struct {
	Type        string `json:"type"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Primary     bool   `json:"primary"`
}

// ServiceProviderConfig answers the configuration document; base is the
// /scim/v2 URL.
func ServiceProviderConfig(base string) any {
	return map[string]any{
		"schemas":          []string{SchemaSPConfig},
		"documentationUri": "https://github.com/idflow/idflow/blob/main/docs/SCIM.md",
		"patch":            supported{true},
		"bulk":             bulkSupport{},
		"filter":           filterSupport{Supported: true, MaxResults: 200},
		"changePassword":   supported{false},
		"sort":             supported{false},
		"etag":             supported{true},
		"authenticationSchemes": []authScheme{{Type: "oauthbearertoken", Name: "OAuth Bearer Token",
			Description: "An app-only token of a client listed in IDFLOW_SCIM_CLIENTS; it provisions its own tenant", Primary: true}},
		"meta": map[string]string{"resourceType": "ServiceProviderConfig", "location": base + "/ServiceProviderConfig"},
	}
}

// ResourceTypes answers the resource types, as a list.
func ResourceTypes(base string) []any {
	return []any{
		map[string]any{"schemas": []string{SchemaResource}, "id": "User", "name": "User", "endpoint": "/Users",
			"description": "User account", "schema": SchemaUser,
			"schemaExtensions": []map[string]any{{"schema": SchemaEnterprise, "required": false}},
			"meta":             map[string]string{"resourceType": "ResourceType", "location": base + "/ResourceTypes/User"}},
		map[string]any{"schemas": []string{SchemaResource}, "id": "Group", "name": "Group", "endpoint": "/Groups",
			"description": "Group", "schema": SchemaGroup,
			"meta": map[string]string{"resourceType": "ResourceType", "location": base + "/ResourceTypes/Group"}},
	}
}

type attribute struct {
	Name          string      `json:"name"`
	Type          string      `json:"type"`
	MultiValued   bool        `json:"multiValued"`
	Required      bool        `json:"required"`
	CaseExact     bool        `json:"caseExact"`
	Mutability    string      `json:"mutability"`
	Returned      string      `json:"returned"`
	Uniqueness    string      `json:"uniqueness"`
	SubAttributes []attribute `json:"subAttributes,omitempty"`
}

func attr(name, typ string, required, caseExact bool, uniqueness string) attribute {
	return attribute{Name: name, Type: typ, Required: required, CaseExact: caseExact, Mutability: "readWrite", Returned: "default", Uniqueness: uniqueness}
}

// Schemas answers the schemas idflow reads: the attributes it indexes and
// acts on. Every other attribute a client sends is kept and answered as
// sent.
func Schemas(base string) []any {
	user := []attribute{
		attr("userName", "string", true, false, "server"),
		attr("externalId", "string", false, true, "server"),
		attr("displayName", "string", false, false, "none"),
		attr("active", "boolean", false, false, "none"),
		{Name: "name", Type: "complex", Mutability: "readWrite", Returned: "default", Uniqueness: "none",
			SubAttributes: []attribute{attr("givenName", "string", false, false, "none"), attr("familyName", "string", false, false, "none"),
				attr("formatted", "string", false, false, "none")}},
		{Name: "emails", Type: "complex", MultiValued: true, Mutability: "readWrite", Returned: "default", Uniqueness: "none",
			SubAttributes: []attribute{attr("value", "string", false, false, "none"), attr("type", "string", false, false, "none"),
				attr("primary", "boolean", false, false, "none")}},
	}
	member := attribute{Name: "members", Type: "complex", MultiValued: true, Mutability: "readWrite", Returned: "default", Uniqueness: "none",
		SubAttributes: []attribute{attr("value", "string", false, true, "none"), attr("display", "string", false, false, "none")}}
	group := []attribute{attr("displayName", "string", true, false, "server"), attr("externalId", "string", false, true, "none"), member}
	schema := func(id, name string, attrs []attribute) any {
		return map[string]any{"schemas": []string{SchemaSchema}, "id": id, "name": name, "attributes": attrs,
			"meta": map[string]string{"resourceType": "Schema", "location": base + "/Schemas/" + id}}
	}
	return []any{schema(SchemaUser, "User", user), schema(SchemaGroup, "Group", group)}
}
