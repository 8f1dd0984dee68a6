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
	var erased idflow.Erased
	_, err = audited(s, ctx, p, adminAction(scope, "user.erase"), "user/"+mark, func() (struct{}, error) {
		if userID == p.UserID {
			return struct{}{}, idflow.Errorf(idflow.EFORBIDDEN, "you cannot erase yourself")
		}
		u, err := s.store.AdminGetUser(ctx, p, scope, userID)
		if err != nil {
			return struct{}{}, err
		}
		// Erasure acts as the user, as a background job does: owner-scoped
		// statements, the user's own RLS identity on PostgreSQL.
		target, err := auth.FromSnapshot(idflow.Snapshot{UserID: u.UserID, TenantID: u.TenantID, Issuer: u.Issuer})
		if err != nil {
			return struct{}{}, err
		}
		if erased, err = s.store.EraseUser(ctx, target, mark); err != nil {
			return struct{}{}, err
		}
		// The rows are gone; what lives outside the database follows. A
		// failure here is reported (and audited as one): the call may be
		// repeated, and finds no user then but these are idempotent.
		if err := s.blobs.DeleteBlobs(ctx, target); err != nil {
			return struct{}{}, fmt.Errorf("erase documents: %w", err)
		}
		for _, id := range erased.Sessions {
			if err := s.cache.Delete(ctx, target, "session", id); err != nil {
				return struct{}{}, fmt.Errorf("erase cache: %w", err)
			}
		}
		return struct{}{}, nil
	})
	if err == nil {
		s.log.InfoContext(ctx, "user erased", "mark", mark, "audit_events_rechained", erased.AuditEvents)
	}
	return err
}
