package httpapi

import (
	"context"
	"log/slog"
	"mime"
	"net/http"
	"strconv"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/service"
)

// The by-id routes of a resource are the same three shapes; each is built
// from the service method it calls, so the route table shows that method.

// byID answers fn of the object the path's param names (200 and the
// result): a get, or an action such as a cancel.
func byID[T any](param string, fn func(context.Context, idflow.Principal, string) (T, error)) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		v, err := fn(r.Context(), p, r.PathValue(param))
		return answer(w, http.StatusOK, v, err)
	}
}

// listed answers the page of the caller's list that fetch reads.
func listed[T any](fetch func(context.Context, idflow.Principal, idflow.Page) (idflow.List[T], error)) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		return list(w, r, func(pg idflow.Page) (idflow.List[T], error) { return fetch(r.Context(), p, pg) })
	}
}

// updateByID decodes a patch and answers update of the object the path's
// param names.
func updateByID[P, T any](param string, update func(context.Context, idflow.Principal, string, P) (T, error)) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		var in P
		if err := decode(r, &in); err != nil {
			return err
		}
		v, err := update(r.Context(), p, r.PathValue(param), in)
		return answer(w, http.StatusOK, v, err)
	}
}

// deleteByID answers 204 once del removed the object the path's param
// names.
func deleteByID(param string, del func(context.Context, idflow.Principal, string) error) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		return noContent(w, del(r.Context(), p, r.PathValue(param)))
	}
}

// Request bodies. Read-only fields (id, user_id, timestamps) are ignored by decode.

type appIn struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

type sessionIn struct {
	Title   string `json:"title"`
	AppID   string `json:"app_id"`
	AgentID string `json:"agent_id"`
}

type messageIn struct {
	Content string `json:"content"`
}

// messageOut is an agent turn's answer: {message, reply, steps, memory}.
type messageOut = service.Turn

type agentIn struct {
	Name         string   `json:"name"`
	Instructions string   `json:"instructions"`
	Model        string   `json:"model"`
	Tools        []string `json:"tools"`
}

type workflowIn struct {
	Name       string            `json:"name"`
	Definition idflow.Definition `json:"definition"`
}

type ingestIn struct {
	Filename    string `json:"filename"`
	Content     string `json:"content"`
	ContentType string `json:"content_type"`
	AppID       string `json:"app_id"`
}

type factIn struct {
	Content string `json:"content"`
}

type searchIn struct {
	Query string `json:"query"`
	Limit int    `json:"limit"`
}

type searchOut struct {
	Items []idflow.ScoredFact `json:"items"`
}

// list answers one page of a list.
func list[T any](w http.ResponseWriter, r *http.Request, fetch func(idflow.Page) (idflow.List[T], error)) error {
	pg, err := page(r)
	if err != nil {
		return err
	}
	l, err := fetch(pg)
	if err != nil {
		return err
	}
	if l.Items == nil {
		l.Items = []T{}
	}
	return writeJSON(w, http.StatusOK, l)
}

func noContent(w http.ResponseWriter, err error) error {
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func answer[T any](w http.ResponseWriter, status int, v T, err error) error {
	if err != nil {
		return err
	}
	return writeJSON(w, status, v)
}

// Apps.

func handleCreateApp(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		var in appIn
		if err := decode(r, &in); err != nil {
			return err
		}
		a, err := svc.CreateApp(r.Context(), p, in.Name, in.Description)
		return answer(w, http.StatusCreated, a, err)
	}
}

// Chat sessions and messages.

func handleListSessions(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		f := idflow.SessionFilter{AppID: r.URL.Query().Get("app_id")}
		return list(w, r, func(pg idflow.Page) (idflow.List[idflow.ChatSession], error) {
			return svc.ListSessions(r.Context(), p, f, pg)
		})
	}
}

func handleCreateSession(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		var in sessionIn
		if err := decode(r, &in); err != nil {
			return err
		}
		c, err := svc.CreateSession(r.Context(), p, service.SessionInput{Title: in.Title, AppID: in.AppID, AgentID: in.AgentID})
		return answer(w, http.StatusCreated, c, err)
	}
}

func handleListMessages(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		return list(w, r, func(pg idflow.Page) (idflow.List[idflow.Message], error) {
			return svc.ListMessages(r.Context(), p, r.PathValue("session_id"), pg)
		})
	}
}

// handleSendMessage runs an agent turn; with Accept: text/event-stream, as
// Server-Sent Events (stream.go).
func handleSendMessage(svc *service.Service, log *slog.Logger) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		var in messageIn
		if err := decode(r, &in); err != nil {
			return err
		}
		if acceptsEventStream(r) {
			return streamMessage(svc, log, w, r, p, in.Content)
		}
		t, err := svc.SendMessage(r.Context(), p, r.PathValue("session_id"), in.Content)
		return answer(w, http.StatusCreated, t, err)
	}
}

// Agents.

func handleCreateAgent(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		var in agentIn
		if err := decode(r, &in); err != nil {
			return err
		}
		a, err := svc.CreateAgent(r.Context(), p, service.AgentInput{Name: in.Name, Instructions: in.Instructions, Model: in.Model, Tools: in.Tools})
		return answer(w, http.StatusCreated, a, err)
	}
}

// Workflows.

func handleCreateWorkflow(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		var in workflowIn
		if err := decode(r, &in); err != nil {
			return err
		}
		wf, err := svc.CreateWorkflow(r.Context(), p, in.Name, in.Definition)
		return answer(w, http.StatusCreated, wf, err)
	}
}

func handleReplaceWorkflow(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		var in workflowIn
		if err := decode(r, &in); err != nil {
			return err
		}
		wf, err := svc.ReplaceWorkflow(r.Context(), p, r.PathValue("workflow_id"), in.Name, in.Definition)
		return answer(w, http.StatusOK, wf, err)
	}
}

// Documents.

// handleIngest accepts JSON {filename, content, app_id?} or a multipart form
// with a `file` part (and an optional `app_id` field).
func handleIngest(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		var in service.IngestInput
		switch {
		case mt == "multipart/form-data":
			mr, err := multipartReader(r, params)
			if err != nil {
				return err
			}
			if in, err = readIngestForm(mr); err != nil {
				return err
			}
		case r.ContentLength == 0 || jsonMediaType(r.Header.Get("Content-Type")):
			var body ingestIn
			if err := decode(r, &body); err != nil {
				return err
			}
			in = service.IngestInput{Filename: body.Filename, Content: []byte(body.Content), ContentType: body.ContentType, AppID: body.AppID}
		default:
			return unsupportedMediaType("application/json or multipart/form-data")
		}
		d, err := svc.Ingest(r.Context(), p, in)
		return answer(w, http.StatusCreated, d, err)
	}
}

func handleDocumentContent(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		d, b, err := svc.DocumentContent(r.Context(), p, r.PathValue("document_id"))
		if err != nil {
			return err
		}
		// Served as an attachment so a browser never renders a user's upload inline.
		w.Header().Set("Content-Type", d.ContentType)
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": d.Filename}))
		w.Header().Set("Content-Security-Policy", "sandbox")
		w.Header().Set("Cache-Control", "private, no-store")
		_, err = w.Write(b)
		return err
	}
}

// Facts and memory.

func handleCreateFact(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		var in factIn
		if err := decode(r, &in); err != nil {
			return err
		}
		f, err := svc.CreateFact(r.Context(), p, in.Content)
		return answer(w, http.StatusCreated, f, err)
	}
}

func handleSearchMemory(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		var in searchIn
		if err := decode(r, &in); err != nil {
			return err
		}
		items, err := svc.SearchMemory(r.Context(), p, in.Query, in.Limit)
		return answer(w, http.StatusOK, searchOut{Items: items}, err)
	}
}

func handleUserFacts(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		return list(w, r, func(pg idflow.Page) (idflow.List[idflow.Fact], error) {
			return svc.UserFacts(r.Context(), p, r.PathValue("user_id"), pg)
		})
	}
}

// Lookups: static, but like every route only for authenticated callers.

type lookupItem struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// staticList answers one page of a fixed list; the cursor is the offset of
// the next item. Like every list it refuses a bad limit or cursor.
func staticList[T any](w http.ResponseWriter, r *http.Request, all []T) error {
	return list(w, r, func(pg idflow.Page) (idflow.List[T], error) {
		start := 0
		if pg.Cursor != "" {
			n, err := strconv.Atoi(pg.Cursor)
			if err != nil || n < 1 || n >= len(all) || strconv.Itoa(n) != pg.Cursor {
				return idflow.List[T]{}, idflow.Errorf(idflow.EINVALID, "invalid cursor")
			}
			start = n
		}
		limit := pg.Limit
		if limit == 0 {
			limit = idflow.DefaultPageLimit
		}
		end := min(start+limit, len(all))
		out := idflow.List[T]{Items: all[start:end]}
		if end < len(all) {
			out.NextCursor = strconv.Itoa(end)
		}
		return out, nil
	})
}

func handleLLMs(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		var items []lookupItem
		for _, m := range svc.Models() {
			items = append(items, lookupItem{ID: m, Name: m})
		}
		return staticList(w, r, items)
	}
}

var personas = []lookupItem{
	{ID: "assistant", Name: "Assistant", Description: "A helpful, concise assistant."},
	{ID: "analyst", Name: "Analyst", Description: "Answers with evidence from your documents and memory."},
	{ID: "reviewer", Name: "Reviewer", Description: "Critiques drafts and points out risks."},
}

func handlePersonas(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	return staticList(w, r, personas)
}

var tags = []lookupItem{
	{ID: "research", Name: "Research"}, {ID: "support", Name: "Support"},
	{ID: "engineering", Name: "Engineering"}, {ID: "sales", Name: "Sales"},
}

func handleTags(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	return staticList(w, r, tags)
}

// Audit, admin, internal.

type auditVerifyOut struct {
	OK         bool   `json:"ok"`
	Checked    int    `json:"checked"`     // events of the caller's scope whose hash was recomputed
	AllTenants bool   `json:"all_tenants"` // the scope was every tenant (a platform admin)
	Error      string `json:"error,omitempty"`
}

// handleAuditVerify checks the chain's links and the hashes of the events
// of the admin's scope. A broken chain is a finding, not a failure of the
// request: it answers 200 with ok=false.
func handleAuditVerify(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		v, err := svc.VerifyAuditChain(r.Context(), p)
		if err != nil && idflow.ErrorCode(err) == idflow.EFORBIDDEN {
			return err
		}
		out := auditVerifyOut{OK: err == nil, Checked: v.Checked, AllTenants: v.AllTenants}
		if err != nil {
			out.Error = idflow.ErrorMessage(err) // never the cause: it may name SQL
		}
		return writeJSON(w, http.StatusOK, out)
	}
}

func handleStats(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		st, err := svc.Stats(r.Context(), p)
		return answer(w, http.StatusOK, st, err)
	}
}
