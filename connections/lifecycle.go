package connections

import (
	"context"
	"errors"

	"github.com/idflow/idflow"
)

// DisconnectAll revokes (where the provider offers revocation) and forgets
// every downstream connection of p: a deactivated user's access to other
// services ends with their access to idflow.
func (m *Manager) DisconnectAll(ctx context.Context, p idflow.Principal) error {
	conns, err := m.ListConnections(ctx, p)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range conns {
		if err := m.Disconnect(ctx, p, c.Provider); err != nil && idflow.ErrorCode(err) != idflow.ENOTFOUND {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
