package service

import (
	"bytes"
	"context"
	"encoding/json"
	"io"

	"github.com/idflow/idflow"
)

// exportUsageDays is how far back the export reads model usage, the most
// GET /api/v1/usage answers at once.
const exportUsageDays = 366

// Export writes everything idflow holds about p as one JSON object (DESIGN
// §8): the profile idflow remembers, then every app, agent, chat session
// with its messages, workflow, run with its events, document (as a link to
// its bytes, never inlined), fact, downstream connection (never a
// credential), personal access token (never a token), the last year's
// model usage and p's audit events. It reads a page at a time and writes
// each item as it reads it, so memory stays bounded whatever p holds.
// Everything is read as p, so nothing of another user's can be in it. The
// export is audited (user.export). An error after the first byte leaves the
// object unfinished: the caller sees invalid JSON, never a partial export
// that looks whole.
func (s *Service) Export(ctx context.Context, p idflow.Principal, w io.Writer) (err error) {
	defer func() { s.Audit(ctx, p, "user.export", "user", err) }()
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	e := &exporter{w: w}
	e.raw(`{"user_id":`)
	e.value(owner)
	e.raw(`,"tenant_id":`)
	e.value(p.TenantID)
	e.raw(`,"email":`)
	e.value(p.Email)
	e.raw(`,"name":`)
	e.value(p.Name)
	e.raw(`,"exported_at":`)
	e.value(s.now().UTC())

	section(e, "apps", func(pg idflow.Page) (idflow.List[idflow.App], error) { return s.store.ListApps(ctx, p, pg) }, nil)
	section(e, "agents", func(pg idflow.Page) (idflow.List[idflow.Agent], error) { return s.store.ListAgents(ctx, p, pg) }, nil)
	section(e, "sessions", func(pg idflow.Page) (idflow.List[idflow.ChatSession], error) {
		return s.store.ListSessions(ctx, p, idflow.SessionFilter{}, pg)
	}, func(c idflow.ChatSession) {
		section(e, "messages", func(pg idflow.Page) (idflow.List[idflow.Message], error) {
			return s.store.ListMessages(ctx, p, c.ID, pg)
		}, nil)
	})
	section(e, "workflows", func(pg idflow.Page) (idflow.List[idflow.Workflow], error) { return s.store.ListWorkflows(ctx, p, pg) }, nil)
	section(e, "runs", func(pg idflow.Page) (idflow.List[idflow.Run], error) { return s.store.ListRuns(ctx, p, pg) }, func(r idflow.Run) {
		e.raw(`,"events":[`)
		first := true
		for after := int64(0); e.err == nil; {
			events, err := s.store.ListEvents(ctx, p, r.ID, after, idflow.MaxPageLimit)
			if err != nil {
				e.err = err
				break
			}
			for _, ev := range events {
				if !first {
					e.raw(",")
				}
				first = false
				e.value(ev)
				after = ev.Seq
			}
			if len(events) < idflow.MaxPageLimit {
				break
			}
		}
		e.raw("]")
	})
	section(e, "documents", func(pg idflow.Page) (idflow.List[idflow.Document], error) { return s.store.ListDocuments(ctx, p, pg) }, func(d idflow.Document) {
		e.raw(`,"content_url":`)
		e.value("/api/v1/documents/" + d.ID + "/content")
	})
	section(e, "facts", func(pg idflow.Page) (idflow.List[idflow.Fact], error) { return s.store.ListFacts(ctx, p, pg) }, nil)
	if e.err == nil {
		conns, err := s.store.ListConnections(ctx, p)
		e.err = err
		e.raw(`,"connections":`)
		if conns == nil {
			conns = []idflow.Connection{}
		}
		e.value(conns)
	}
	section(e, "tokens", func(pg idflow.Page) (idflow.List[idflow.PersonalToken], error) {
		return s.store.ListPersonalTokens(ctx, p, pg)
	}, nil)
	if e.err == nil {
		to := s.now().UTC()
		days, err := s.store.ListUsage(ctx, p, to.AddDate(0, 0, -(exportUsageDays-1)), to)
		e.err = err
		e.raw(`,"usage":`)
		if days == nil {
			days = []idflow.UsageDay{}
		}
		e.value(days)
	}
	section(e, "audit", func(pg idflow.Page) (idflow.List[idflow.AuditEvent], error) { return s.store.ListAudit(ctx, p, pg) }, nil)
	e.raw("}\n")
	return e.err
}

// exporter writes JSON and keeps the first error, after which it writes
// nothing.
type exporter struct {
	w   io.Writer
	err error
}

func (e *exporter) raw(s string) {
	if e.err == nil {
		_, e.err = io.WriteString(e.w, s)
	}
}

func (e *exporter) value(v any) {
	if e.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		e.err = err
		return
	}
	_, e.err = e.w.Write(b)
}

// section writes `,"name":[...]`, every page of fetch; with more, each
// item is written as an open object, more adds its fields, and the object
// is closed after it.
func section[T any](e *exporter, name string, fetch func(idflow.Page) (idflow.List[T], error), more func(T)) {
	e.raw(`,"` + name + `":[`)
	pg := idflow.Page{Limit: idflow.MaxPageLimit}
	first := true
	for e.err == nil {
		l, err := fetch(pg)
		if err != nil {
			e.err = err
			return
		}
		for _, it := range l.Items {
			if !first {
				e.raw(",")
			}
			first = false
			if more == nil {
				e.value(it)
				continue
			}
			b, err := json.Marshal(it)
			if err != nil {
				e.err = err
				return
			}
			e.raw(string(bytes.TrimSuffix(bytes.TrimSpace(b), []byte("}"))))
			more(it)
			e.raw("}")
		}
		if l.NextCursor == "" {
			break
		}
		pg.Cursor = l.NextCursor
	}
	e.raw("]")
}
