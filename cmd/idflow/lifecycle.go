package main

import (
	"context"
	"log/slog"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/authserver"
	"github.com/idflow/idflow/connections"
	"github.com/idflow/idflow/httpapi"
	"github.com/idflow/idflow/lifecycle"
	"github.com/idflow/idflow/mcp"
	"github.com/idflow/idflow/redis"
	"github.com/idflow/idflow/service"
)

// lifecycleSet is this replica's view of who is disabled and of directory
// groups (package lifecycle), loaded from the database; with Redis (rc),
// replicas announce changes to each other on it, and
// every replica polls besides (docs/SCIM.md, "Deactivation").
func lifecycleSet(ctx context.Context, db idflow.Store, rc *redis.Client, log *slog.Logger) (*lifecycle.Set, error) {
	lc := lifecycle.Config{Source: db, Log: log.With("component", "lifecycle")}
	if rc != nil {
		lc.Notifier = redis.NewNotifier(rc)
	}
	set := lifecycle.New(lc)
	if err := set.Start(ctx); err != nil {
		return nil, err
	}
	return set, nil
}

// wireDeactivation says what a deactivation ends. Once, on the replica
// that records it: the user's runs (cancelled) and downstream connections
// (revoked at the provider where it offers revocation); the service ends
// browser sessions itself. On every replica, as it learns of it: the
// user's WebSockets (closed with 4403) and MCP sessions. With idflow as the
// authorization server of /mcp (grants non-nil), every grant of the user
// is revoked too: re-enabled, they consent again.
func wireDeactivation(svc *service.Service, set *lifecycle.Set, runs httpapi.Runs, downstream *connections.Manager, srv *httpapi.Server, mcpServer *mcp.Server, grants *authserver.Server) {
	svc.OnDeactivate(func(ctx context.Context, subject idflow.Principal) error {
		return svc.CancelRuns(ctx, subject, runs.Cancel)
	})
	if downstream != nil {
		svc.OnDeactivate(downstream.DisconnectAll)
	}
	if grants != nil {
		svc.OnDeactivate(func(ctx context.Context, subject idflow.Principal) error {
			_, err := grants.RevokeUserGrants(ctx, subject, subject.UserID)
			return err
		})
	}
	set.OnDisable(srv.CloseUser)
	set.OnDisable(mcpServer.CloseUser)
}
