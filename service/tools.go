package service

import (
	"context"

	"github.com/idflow/idflow"
)

// ToolsFor lists the tools p may use, sorted by name: what an agent's
// tools can name and what its turns may offer (docs/AGENTS.md). Without a
// catalog there are none.
func (s *Service) ToolsFor(ctx context.Context, p idflow.Principal) ([]idflow.ToolSpec, error) {
	if _, err := p.Owner(); err != nil {
		return nil, err
	}
	if s.tools == nil {
		return []idflow.ToolSpec{}, nil
	}
	specs, err := s.tools.ToolsFor(ctx, p)
	if err != nil {
		return nil, err
	}
	if specs == nil {
		specs = []idflow.ToolSpec{}
	}
	return specs, nil
}
