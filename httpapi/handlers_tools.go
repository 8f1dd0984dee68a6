package httpapi

import (
	"net/http"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/service"
)

// toolsOut is the tool catalog as the caller may use it. It is not paged:
// the catalog is bounded (the built-ins, at most 256 tools per downstream
// server), and a form picking an agent's tools needs all of it.
type toolsOut struct {
	Items []idflow.ToolSpec `json:"items"`
}

// handleListTools answers the tools the caller may use: the built-ins the
// policy opens to them and the downstream servers' (`server` names those).
func handleListTools(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		specs, err := svc.ToolsFor(r.Context(), p)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, toolsOut{Items: specs})
	}
}
