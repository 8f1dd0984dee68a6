package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/service"
)

// Runs starts and cancels runs (package runner).
type Runs interface {
	Start(ctx context.Context, p idflow.Principal, workflowID string, input json.RawMessage, version int) (idflow.Run, error)
	Cancel(ctx context.Context, p idflow.Principal, runID string) (idflow.Run, error)
}

type runIn struct {
	Input   json.RawMessage `json:"input"`
	Version int             `json:"version"`
}

type eventsOut struct {
	Items []idflow.Event `json:"items"`
}

func handleStartRun(runs Runs) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		var in runIn
		if err := decode(r, &in); err != nil {
			return err
		}
		if in.Version < 0 {
			return idflow.Errorf(idflow.EINVALID, "version must be 0 (the draft) or a published version")
		}
		run, err := runs.Start(r.Context(), p, r.PathValue("workflow_id"), in.Input, in.Version)
		return answer(w, http.StatusAccepted, run, err)
	}
}

func handleRunEvents(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		var after int64
		if v := r.URL.Query().Get("after_seq"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return idflow.Errorf(idflow.EINVALID, "after_seq must be a non-negative integer")
			}
			after = n
		}
		limit := 1000
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return idflow.Errorf(idflow.EINVALID, "limit must be within 1..1000")
			}
			limit = n
		}
		evs, err := svc.ListEvents(r.Context(), p, r.PathValue("run_id"), after, limit)
		if evs == nil {
			evs = []idflow.Event{}
		}
		return answer(w, http.StatusOK, eventsOut{Items: evs}, err)
	}
}

// handleCancelRun cancels the path's run. runs is an interface that is nil
// in a server built without a runner, so its method is taken per request.
func handleCancelRun(runs Runs) handler {
	return byID("run_id", func(ctx context.Context, p idflow.Principal, id string) (idflow.Run, error) {
		return runs.Cancel(ctx, p, id)
	})
}
