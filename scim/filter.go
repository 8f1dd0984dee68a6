package scim

import (
	"strings"

	filter "github.com/scim2/filter-parser/v2"

	"github.com/idflow/idflow"
)

// Resource kinds a filter applies to.
const (
	Users  = "User"
	Groups = "Group"
)

// ParseFilter turns a list's filter into a DirectoryFilter. What a
// directory looks resources up by is supported: `eq` on id, userName,
// externalId, displayName (and, for groups, members / members.value),
// joined by `and`. Anything else is invalidFilter (400): a filter idflow
// cannot answer exactly is never answered approximately.
func ParseFilter(kind, raw string) (idflow.DirectoryFilter, error) {
	var f idflow.DirectoryFilter
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return f, nil
	}
	if len(raw) > MaxFilterLen {
		return f, invalid("invalidFilter", "the filter is longer than %d bytes", MaxFilterLen)
	}
	exp, err := parseFilter(raw)
	if err != nil {
		return f, invalid("invalidFilter", "the filter is not a SCIM filter")
	}
	if err := addTerms(kind, exp, &f); err != nil {
		return idflow.DirectoryFilter{}, err
	}
	return f, nil
}

// parseFilter is the library's parser, which must never take idflow down:
// a panic on odd input is a refusal.
func parseFilter(raw string) (exp filter.Expression, err error) {
	defer func() {
		if recover() != nil {
			exp, err = nil, invalid("invalidFilter", "the filter is not a SCIM filter")
		}
	}()
	return filter.ParseFilter([]byte(raw))
}

func addTerms(kind string, exp filter.Expression, f *idflow.DirectoryFilter) error {
	switch e := exp.(type) {
	case *filter.LogicalExpression:
		if e.Operator != filter.AND {
			return invalid("invalidFilter", "only `and` joins filter terms here")
		}
		if err := addTerms(kind, e.Left, f); err != nil {
			return err
		}
		return addTerms(kind, e.Right, f)
	case *filter.AttributeExpression:
		return addTerm(kind, e, f)
	case *filter.ValuePath:
		// members[value eq "…"]
		if strings.EqualFold(e.AttributePath.AttributeName, "members") && kind == Groups {
			inner, ok := e.ValueFilter.(*filter.AttributeExpression)
			if ok && strings.EqualFold(inner.AttributePath.AttributeName, "value") && inner.AttributePath.SubAttribute == nil {
				return addTerm(kind, &filter.AttributeExpression{
					AttributePath: filter.AttributePath{AttributeName: "members"}, Operator: inner.Operator, CompareValue: inner.CompareValue}, f)
			}
		}
	}
	return invalid("invalidFilter", "only `eq` on id, userName, externalId, displayName (and members for groups), joined by `and`, is supported")
}

func addTerm(kind string, e *filter.AttributeExpression, f *idflow.DirectoryFilter) error {
	if e.Operator != filter.EQ {
		return invalid("invalidFilter", "only the `eq` operator is supported")
	}
	v, ok := e.CompareValue.(string)
	if !ok {
		return invalid("invalidFilter", "compare with a string")
	}
	p := e.AttributePath
	if uri := p.URI(); uri != "" && !strings.EqualFold(uri, schemaOf(kind)) {
		return invalid("invalidFilter", "unknown schema %q in the filter", uri)
	}
	name := strings.ToLower(p.AttributeName)
	if sub := p.SubAttributeName(); sub != "" {
		if name != "members" || !strings.EqualFold(sub, "value") {
			return invalid("invalidFilter", "filtering on %s is not supported", p.String())
		}
	}
	var dst **string
	switch {
	case name == "id":
		dst = &f.ID
	case name == "username" && kind == Users:
		dst = &f.UserName
	case name == "externalid":
		dst = &f.ExternalID
	case name == "displayname":
		dst = &f.DisplayName
	case name == "members" && kind == Groups:
		dst = &f.Member
	default:
		return invalid("invalidFilter", "filtering on %s is not supported", p.String())
	}
	if *dst != nil && **dst != v {
		none := " " // two values of one attribute: nothing matches (every stored name is trimmed)
		*dst = &none
		return nil
	}
	*dst = &v
	return nil
}

func schemaOf(kind string) string {
	if kind == Groups {
		return SchemaGroup
	}
	return SchemaUser
}
