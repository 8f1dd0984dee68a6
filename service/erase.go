package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
)

// ErasedMark is what stands for an erased user's id in the audit chain:
// "erased:" and the hex HMAC-SHA-256 of the id under key. The same id
// always gives the same mark, so an auditor holding the key (and the id,
// from elsewhere) can still find the user's events; without the key the
// mark names nobody.
func ErasedMark(key []byte, userID string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(userID))
	return idflow.ErasedPrefix + hex.EncodeToString(m.Sum(nil))
}

// EraseUser erases userID (docs/SECURITY.md, "Erasure"): every row of theirs in every table,
// their River jobs, their document files, their cached chat sessions; in
// the audit chain their id becomes its ErasedMark and the chain is
// re-chained (docs/SECURITY.md, "Erasure"). p must administer the user's
// tenant (a platform admin any tenant); a user outside p's scope, and a
// user never seen, answer NotFound("user"). p cannot erase itself. The
// erasure is audited as admin.user.erase (platform_admin.user.erase) with
// the mark as its resource, never the id.
func (s *Service) EraseUser(ctx context.Context, p idflow.Principal, userID string) error {
	scope, err := s.AdminScope(p)
	if err != nil {
		s.Audit(ctx, p, "admin.user.erase", "user", err)
		return err
	}
	if len(s.cfg.ErasureKey) == 0 {
		return idflow.Errorf(idflow.EUNAVAILABLE, "erasure is not configured (no erasure key)")
	}
	mark := ErasedMark(s.cfg.ErasureKey, userID)
	_, err = audited(s, ctx, p, adminAction(scope, "user.erase"), "user/"+mark, func() (struct{}, error) {
		if userID == p.UserID {
			return struct{}{}, idflow.Errorf(idflow.EFORBIDDEN, "you cannot erase yourself")
		}
		u, err := s.store.AdminGetUser(ctx, p, scope, userID)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, s.erase(ctx, p, idflow.UserRef{TenantID: u.TenantID, UserID: u.UserID}, u.Issuer, mark)
	})
	return err
}

// eraseDirectoryUser is SCIM DELETE's erasure of ref, a user of the
// provisioning client p's tenant: the same as EraseUser's, audited as
// scim.user.erase with the mark as its resource.
func (s *Service) eraseDirectoryUser(ctx context.Context, p idflow.Principal, ref idflow.UserRef) error {
	if len(s.cfg.ErasureKey) == 0 {
		return idflow.Errorf(idflow.EUNAVAILABLE, "erasure is not configured (no erasure key)")
	}
	mark := ErasedMark(s.cfg.ErasureKey, ref.UserID)
	_, err := audited(s, ctx, p, "scim.user.erase", "user/"+mark, func() (struct{}, error) {
		return struct{}{}, s.erase(ctx, p, ref, "", mark)
	})
	return err
}

// erase ends what ref has open — deactivation's steps: browser and MCP
// sessions, sockets, runs, downstream connections revoked at their
// provider — and then erases everything of theirs, acting as them, as a
// background job does (owner-scoped statements, the user's own RLS
// identity on PostgreSQL).
func (s *Service) erase(ctx context.Context, actor idflow.Principal, ref idflow.UserRef, issuer, mark string) error {
	s.stateChanged(ctx, actor, ref, true)
	target, err := auth.FromSnapshot(idflow.Snapshot{UserID: ref.UserID, TenantID: ref.TenantID, Issuer: issuer})
	if err != nil {
		return err
	}
	erased, err := s.store.EraseUser(ctx, target, mark)
	if err != nil {
		return err
	}
	// The rows are gone; what lives outside the database follows. A
	// failure here is reported (and audited as one): the call may be
	// repeated, and finds no user then but these are idempotent.
	if err := s.blobs.DeleteBlobs(ctx, target); err != nil {
		return fmt.Errorf("erase documents: %w", err)
	}
	for _, id := range erased.Sessions {
		if err := s.cache.Delete(ctx, target, "session", id); err != nil {
			return fmt.Errorf("erase cache: %w", err)
		}
	}
	s.log.InfoContext(ctx, "user erased", "mark", mark, "audit_events_rechained", erased.AuditEvents)
	return nil
}
