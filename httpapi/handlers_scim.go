package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/scim"
	"github.com/idflow/idflow/service"
)

// SCIM 2.0 at /scim/v2 (docs/SCIM.md): app-only tokens of
// IDFLOW_SCIM_CLIENTS provision their own tenant. The protocol is package
// scim's; these handlers read the request, call the service, and answer
// application/scim+json. Errors on these routes answer SCIM's error
// document (writeError).

// scimPrefix is where SCIM is served.
const scimPrefix = "/scim/v2"

// scimDoc documents a SCIM resource in the OpenAPI document.
type scimDoc map[string]any

func scimRoutes(s *Server, svc *service.Service) []route {
	base := strings.TrimRight(s.cfg.PublicURL, "/") + scimPrefix
	const users, groups = scimPrefix + "/Users", scimPrefix + "/Groups"
	return []route{
		{method: "GET", pattern: scimPrefix + "/ServiceProviderConfig", access: accessSCIM, summary: "SCIM: the service provider's configuration", out: scimDoc{}, serve: handleSCIMStatic(scim.ServiceProviderConfig(base))},
		{method: "GET", pattern: scimPrefix + "/ResourceTypes", access: accessSCIM, summary: "SCIM: resource types", out: scimDoc{}, serve: handleSCIMStatic(scim.NewList(scim.ResourceTypes(base), 2, idflow.DirectoryPage{StartIndex: 1}))},
		{method: "GET", pattern: scimPrefix + "/Schemas", access: accessSCIM, summary: "SCIM: schemas", out: scimDoc{}, serve: handleSCIMStatic(scim.NewList(scim.Schemas(base), 2, idflow.DirectoryPage{StartIndex: 1}))},

		{method: "GET", pattern: users, access: accessSCIM, summary: "SCIM: list users (?filter= eq on userName, externalId, displayName, id joined by and; ?startIndex=&count=)", out: scimDoc{}, serve: handleSCIMListUsers(svc, base)},
		{method: "POST", pattern: users, access: accessSCIM, summary: "SCIM: provision a user (externalId is the idflow user id: Entra's oid)", in: scimDoc{}, out: scimDoc{}, status: 201, serve: handleSCIMCreateUser(svc, base)},
		{method: "GET", pattern: users + "/{id}", access: accessSCIM, summary: "SCIM: a user", out: scimDoc{}, serve: handleSCIMGetUser(svc, base)},
		{method: "PUT", pattern: users + "/{id}", access: accessSCIM, summary: "SCIM: replace a user (If-Match)", in: scimDoc{}, out: scimDoc{}, serve: handleSCIMReplaceUser(svc, base)},
		{method: "PATCH", pattern: users + "/{id}", access: accessSCIM, summary: "SCIM: patch a user (RFC 7644 PatchOp, Entra ID's forms too); active:false disables the user everywhere", in: scimDoc{}, out: scimDoc{}, serve: handleSCIMPatchUser(svc, base)},
		{method: "DELETE", pattern: users + "/{id}", access: accessSCIM, summary: "SCIM: deprovision a user (stays disabled; their data is erased)", status: 204, serve: handleSCIMDeleteUser(svc)},

		{method: "GET", pattern: groups, access: accessSCIM, summary: "SCIM: list groups (?filter= eq on displayName, externalId, id, members; ?excludedAttributes=members)", out: scimDoc{}, serve: handleSCIMListGroups(svc, base)},
		{method: "POST", pattern: groups, access: accessSCIM, summary: "SCIM: provision a group; its members' directory groups count for the policy", in: scimDoc{}, out: scimDoc{}, status: 201, serve: handleSCIMCreateGroup(svc, base)},
		{method: "GET", pattern: groups + "/{id}", access: accessSCIM, summary: "SCIM: a group (?excludedAttributes=members)", out: scimDoc{}, serve: handleSCIMGetGroup(svc, base)},
		{method: "PUT", pattern: groups + "/{id}", access: accessSCIM, summary: "SCIM: replace a group and its members (If-Match)", in: scimDoc{}, out: scimDoc{}, serve: handleSCIMReplaceGroup(svc, base)},
		{method: "PATCH", pattern: groups + "/{id}", access: accessSCIM, summary: "SCIM: patch a group: members add/remove (by value list or members[value eq \"…\"]), displayName", in: scimDoc{}, status: 204, serve: handleSCIMPatchGroup(svc)},
		{method: "DELETE", pattern: groups + "/{id}", access: accessSCIM, summary: "SCIM: deprovision a group", status: 204, serve: handleSCIMDeleteGroup(svc)},
	}
}

// writeSCIM answers v as application/scim+json, with its ETag when
// version is set.
func writeSCIM(w http.ResponseWriter, status int, v any, version int64) error {
	h := w.Header()
	h.Set("Content-Type", scim.MediaType)
	h.Set("Cache-Control", "no-store")
	if version > 0 {
		h.Set("ETag", scim.ETag(version))
	}
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// writeSCIMError answers err as SCIM's error document (RFC 7644 §3.12).
func writeSCIMError(w http.ResponseWriter, status int, err error) {
	h := w.Header()
	h.Set("Content-Type", scim.MediaType)
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(scim.NewErrorDoc(status, err))
}

// isSCIM reports whether r is a SCIM request, answered with SCIM errors.
func isSCIM(r *http.Request) bool {
	return r.URL.Path == scimPrefix || strings.HasPrefix(r.URL.Path, scimPrefix+"/")
}

func readSCIM(r *http.Request) ([]byte, error) {
	if err := requireJSON(r); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, idflow.WrapError(idflow.EINVALID, "could not read the request body", err)
	}
	return body, nil
}

func handleSCIMStatic(doc any) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		return writeSCIM(w, http.StatusOK, doc, 0)
	}
}

// readSCIMWrite reads a replace's or a patch's If-Match (0: none) and body.
func readSCIMWrite(r *http.Request) (ifMatch int64, body []byte, err error) {
	if ifMatch, err = scim.IfMatch(r.Header.Get("If-Match")); err != nil {
		return 0, nil, err
	}
	body, err = readSCIM(r)
	return ifMatch, body, err
}

// listArgs reads filter, startIndex and count.
func listArgs(r *http.Request, kind string) (idflow.DirectoryFilter, idflow.DirectoryPage, error) {
	q := r.URL.Query()
	f, err := scim.ParseFilter(kind, q.Get("filter"))
	if err != nil {
		return f, idflow.DirectoryPage{}, err
	}
	page, err := scim.Page(q.Get("startIndex"), q.Get("count"))
	return f, page, err
}

// withMembers reports whether a group's members are asked for: not when
// excludedAttributes names members (Entra asks so), nor when attributes
// lists others only.
func withMembers(r *http.Request) bool {
	q := r.URL.Query()
	for _, a := range strings.Split(q.Get("excludedAttributes"), ",") {
		if strings.EqualFold(strings.TrimSpace(a), "members") {
			return false
		}
	}
	if attrs := q.Get("attributes"); attrs != "" {
		for _, a := range strings.Split(attrs, ",") {
			if strings.EqualFold(strings.TrimSpace(a), "members") {
				return true
			}
		}
		return false
	}
	return true
}

func handleSCIMListUsers(svc *service.Service, base string) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		f, page, err := listArgs(r, scim.Users)
		if err != nil {
			return err
		}
		list, err := svc.SCIMListUsers(r.Context(), p, f, page)
		if err != nil {
			return err
		}
		items := make([]any, 0, len(list.Items))
		for _, u := range list.Items {
			items = append(items, scim.UserResource(u, base))
		}
		return writeSCIM(w, http.StatusOK, scim.NewList(items, list.Total, page), 0)
	}
}

func handleSCIMCreateUser(svc *service.Service, base string) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		body, err := readSCIM(r)
		if err != nil {
			return err
		}
		u, err := scim.ParseUser(body)
		if err != nil {
			return err
		}
		out, err := svc.SCIMCreateUser(r.Context(), p, u)
		if err != nil {
			return err
		}
		w.Header().Set("Location", base+"/Users/"+out.ID)
		return writeSCIM(w, http.StatusCreated, scim.UserResource(out, base), out.Version)
	}
}

func handleSCIMGetUser(svc *service.Service, base string) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		u, err := svc.SCIMGetUser(r.Context(), p, r.PathValue("id"))
		if err != nil {
			return err
		}
		return writeSCIM(w, http.StatusOK, scim.UserResource(u, base), u.Version)
	}
}

func handleSCIMReplaceUser(svc *service.Service, base string) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		ifMatch, body, err := readSCIMWrite(r)
		if err != nil {
			return err
		}
		next, err := scim.ParseUser(body)
		if err != nil {
			return err
		}
		out, err := svc.SCIMUpdateUser(r.Context(), p, r.PathValue("id"), ifMatch, func(idflow.DirectoryUser) (idflow.DirectoryUser, error) {
			return next, nil
		})
		if err != nil {
			return err
		}
		return writeSCIM(w, http.StatusOK, scim.UserResource(out, base), out.Version)
	}
}

func handleSCIMPatchUser(svc *service.Service, base string) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		ifMatch, body, err := readSCIMWrite(r)
		if err != nil {
			return err
		}
		out, err := svc.SCIMUpdateUser(r.Context(), p, r.PathValue("id"), ifMatch, func(cur idflow.DirectoryUser) (idflow.DirectoryUser, error) {
			return scim.PatchUser(cur, body)
		})
		if err != nil {
			return err
		}
		return writeSCIM(w, http.StatusOK, scim.UserResource(out, base), out.Version)
	}
}

func handleSCIMDeleteUser(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		ifMatch, err := scim.IfMatch(r.Header.Get("If-Match"))
		if err != nil {
			return err
		}
		if err := svc.SCIMDeleteUser(r.Context(), p, r.PathValue("id"), ifMatch); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func handleSCIMListGroups(svc *service.Service, base string) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		f, page, err := listArgs(r, scim.Groups)
		if err != nil {
			return err
		}
		f.WithMembers = withMembers(r)
		list, err := svc.SCIMListGroups(r.Context(), p, f, page)
		if err != nil {
			return err
		}
		items := make([]any, 0, len(list.Items))
		for _, g := range list.Items {
			items = append(items, scim.GroupResource(g, base, f.WithMembers))
		}
		return writeSCIM(w, http.StatusOK, scim.NewList(items, list.Total, page), 0)
	}
}

func handleSCIMCreateGroup(svc *service.Service, base string) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		body, err := readSCIM(r)
		if err != nil {
			return err
		}
		g, err := scim.ParseGroup(body)
		if err != nil {
			return err
		}
		out, err := svc.SCIMCreateGroup(r.Context(), p, g)
		if err != nil {
			return err
		}
		w.Header().Set("Location", base+"/Groups/"+out.ID)
		return writeSCIM(w, http.StatusCreated, scim.GroupResource(out, base, true), out.Version)
	}
}

func handleSCIMGetGroup(svc *service.Service, base string) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		members := withMembers(r)
		g, err := svc.SCIMGetGroup(r.Context(), p, r.PathValue("id"), members)
		if err != nil {
			return err
		}
		return writeSCIM(w, http.StatusOK, scim.GroupResource(g, base, members), g.Version)
	}
}

func handleSCIMReplaceGroup(svc *service.Service, base string) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		ifMatch, body, err := readSCIMWrite(r)
		if err != nil {
			return err
		}
		next, err := scim.ParseGroup(body)
		if err != nil {
			return err
		}
		out, err := svc.SCIMUpdateGroup(r.Context(), p, r.PathValue("id"), ifMatch, func(idflow.DirectoryGroup) (idflow.GroupChange, error) {
			return idflow.GroupChange{Group: next, DocChanged: true, ReplaceMembers: true, Members: next.Members}, nil
		})
		if err != nil {
			return err
		}
		return writeSCIM(w, http.StatusOK, scim.GroupResource(out, base, true), out.Version)
	}
}

// handleSCIMPatchGroup answers 204 (RFC 7644 §3.5.2 allows it): a group
// of many members is not read back for a change of one.
func handleSCIMPatchGroup(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		ifMatch, body, err := readSCIMWrite(r)
		if err != nil {
			return err
		}
		out, err := svc.SCIMUpdateGroup(r.Context(), p, r.PathValue("id"), ifMatch, func(cur idflow.DirectoryGroup) (idflow.GroupChange, error) {
			return scim.PatchGroup(cur, body)
		})
		if err != nil {
			return err
		}
		w.Header().Set("ETag", scim.ETag(out.Version))
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func handleSCIMDeleteGroup(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		ifMatch, err := scim.IfMatch(r.Header.Get("If-Match"))
		if err != nil {
			return err
		}
		if err := svc.SCIMDeleteGroup(r.Context(), p, r.PathValue("id"), ifMatch); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

// userStateOut answers a disable or enable.
type userStateOut struct {
	UserID   string `json:"user_id"`
	TenantID string `json:"tenant_id"`
	Disabled bool   `json:"disabled"`
}

// handleSetUserDisabled disables or re-enables a user of the admin's
// scope: every credential of theirs is refused on every replica within
// seconds (docs/SCIM.md, "Deactivation").
func handleSetUserDisabled(svc *service.Service, disabled bool) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		st, err := svc.SetUserDisabled(r.Context(), p, r.PathValue("user_id"), disabled)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, userStateOut{UserID: st.UserID, TenantID: st.TenantID, Disabled: st.Disabled})
	}
}
