package service

import (
	"context"
	"errors"
	"strconv"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
)

// Lifecycle is told of every change of who is disabled and of directory
// groups, so that this replica applies it at once and the others learn it
// (package lifecycle).
type Lifecycle interface {
	StateChanged(ctx context.Context) error
	GroupsChanged(ctx context.Context) error
}

// Deactivation ends something a user holds open once they are disabled
// (their runs, their downstream connections); the wiring registers them
// (OnDeactivate). subject is the disabled user (auth.Subject).
type Deactivation func(ctx context.Context, subject idflow.Principal) error

// SetLifecycle sets where changes of the lifecycle are told; nil: nowhere.
func (s *Service) SetLifecycle(l Lifecycle, scimClients []string) {
	s.lifecycle, s.scimClients = l, scimClients
}

// OnDeactivate registers d, run for every user disabled on this replica
// (by SCIM or an admin), after the state is recorded.
func (s *Service) OnDeactivate(d Deactivation) { s.deactivations = append(s.deactivations, d) }

// DirectoryScope answers the tenant p provisions over SCIM
// (idflow.NewDirectoryScope with IDFLOW_SCIM_CLIENTS).
func (s *Service) DirectoryScope(p idflow.Principal) (idflow.DirectoryScope, error) {
	return idflow.NewDirectoryScope(p, s.scimClients)
}

// stateChanged tells the lifecycle that who is disabled changed, then,
// for a user now disabled, ends what they hold open. The state is the
// record: a failure here is logged, and the user is refused regardless.
func (s *Service) stateChanged(ctx context.Context, actor idflow.Principal, ref idflow.UserRef, disabled bool) {
	ctx = context.WithoutCancel(ctx)
	if s.lifecycle != nil {
		if err := s.lifecycle.StateChanged(ctx); err != nil {
			s.log.ErrorContext(ctx, "lifecycle change not applied", "err", err)
		}
	}
	if !disabled {
		return
	}
	subject, err := auth.Subject(ref)
	if err != nil {
		s.log.WarnContext(ctx, "deactivation: no subject", "err", err)
		return
	}
	n, err := s.store.EndBrowserSessions(ctx, subject)
	s.auditDetail(ctx, actor, "user.sessions_end", "user/"+ref.UserID, "browser sessions ended: "+strconv.Itoa(n), err)
	for _, d := range s.deactivations {
		if err := d(ctx, subject); err != nil {
			s.log.WarnContext(ctx, "deactivation step failed", "err", err)
		}
	}
}

func (s *Service) groupsChanged(ctx context.Context) {
	if s.lifecycle != nil {
		if err := s.lifecycle.GroupsChanged(context.WithoutCancel(ctx)); err != nil {
			s.log.ErrorContext(ctx, "directory groups change not applied", "err", err)
		}
	}
}

func stateAction(disabled bool) string {
	if disabled {
		return "user.disable"
	}
	return "user.enable"
}

// SetUserDisabled disables or re-enables a user of the admin's scope
// (POST /api/v1/admin/users/{user_id}/disable, /enable), audited.
func (s *Service) SetUserDisabled(ctx context.Context, admin idflow.Principal, userID string, disabled bool) (idflow.UserState, error) {
	scope, err := s.AdminScope(admin)
	if err != nil {
		s.Audit(ctx, admin, stateAction(disabled), "user/"+userID, err)
		return idflow.UserState{}, err
	}
	st, err := s.store.AdminSetUserDisabled(ctx, admin, scope, userID, disabled)
	s.auditDetail(ctx, admin, stateAction(disabled), "user/"+userID, scope.String(), err)
	if err != nil {
		return idflow.UserState{}, err
	}
	s.stateChanged(ctx, admin, st.UserRef, disabled)
	return st, nil
}

// withScope runs fn with p's directory scope; a refused scope is audited.
func withScope[T any](s *Service, ctx context.Context, p idflow.Principal, action, resource string, fn func(idflow.DirectoryScope) (T, error)) (T, error) {
	scope, err := s.DirectoryScope(p)
	if err != nil {
		var zero T
		s.Audit(ctx, p, action, resource, err)
		return zero, err
	}
	return fn(scope)
}

// SCIMCreateUser provisions a user (SCIM POST /Users).
func (s *Service) SCIMCreateUser(ctx context.Context, p idflow.Principal, u idflow.DirectoryUser) (idflow.DirectoryUser, error) {
	return withScope(s, ctx, p, "scim.user.create", "scim_user", func(scope idflow.DirectoryScope) (idflow.DirectoryUser, error) {
		out, err := auditedID(s, ctx, p, "scim.user.create", "scim_user", func(u idflow.DirectoryUser) string { return u.ID }, func() (idflow.DirectoryUser, error) {
			return s.store.CreateDirectoryUser(ctx, p, scope, u)
		})
		if err != nil {
			return out, err
		}
		if !out.Active {
			s.Audit(ctx, p, "user.disable", "user/"+out.UserID, nil)
		}
		s.stateChanged(ctx, p, idflow.UserRef{TenantID: out.TenantID, UserID: out.UserID}, !out.Active)
		return out, nil
	})
}

// SCIMGetUser reads a provisioned user.
func (s *Service) SCIMGetUser(ctx context.Context, p idflow.Principal, id string) (idflow.DirectoryUser, error) {
	return withScope(s, ctx, p, "scim.user.get", "scim_user/"+id, func(scope idflow.DirectoryScope) (idflow.DirectoryUser, error) {
		return deniedOnly(s, ctx, p, "scim.user.get", "scim_user/"+id, func() (idflow.DirectoryUser, error) {
			return s.store.GetDirectoryUser(ctx, p, scope, id)
		})
	})
}

// SCIMListUsers lists provisioned users.
func (s *Service) SCIMListUsers(ctx context.Context, p idflow.Principal, f idflow.DirectoryFilter, page idflow.DirectoryPage) (idflow.DirectoryList[idflow.DirectoryUser], error) {
	return withScope(s, ctx, p, "scim.user.list", "scim_user", func(scope idflow.DirectoryScope) (idflow.DirectoryList[idflow.DirectoryUser], error) {
		return s.store.ListDirectoryUsers(ctx, p, scope, f, page)
	})
}

// versionCheck refuses a resource whose version is not ifMatch (0: any).
func versionCheck(ifMatch, have int64) error {
	if ifMatch != 0 && ifMatch != have {
		return idflow.Errorf(idflow.EPRECONDITION, "the resource changed since that version (If-Match)")
	}
	return nil
}

// maxRetries bounds how often a PATCH re-reads a resource that changed
// while it was being patched (without If-Match, the client asked for its
// change on whatever is current).
const maxRetries = 3

// SCIMUpdateUser replaces (PUT) or patches (PATCH) a provisioned user:
// change answers the new user from the current one. If-Match (ifMatch, 0
// for none) must name the current version. A change of active disables
// or re-enables the user, with everything that follows.
func (s *Service) SCIMUpdateUser(ctx context.Context, p idflow.Principal, id string, ifMatch int64, change func(idflow.DirectoryUser) (idflow.DirectoryUser, error)) (idflow.DirectoryUser, error) {
	resource := "scim_user/" + id
	return withScope(s, ctx, p, "scim.user.update", resource, func(scope idflow.DirectoryScope) (idflow.DirectoryUser, error) {
		for attempt := 1; ; attempt++ {
			cur, err := s.store.GetDirectoryUser(ctx, p, scope, id)
			if err == nil {
				err = versionCheck(ifMatch, cur.Version)
			}
			var next idflow.DirectoryUser
			if err == nil {
				next, err = change(cur)
			}
			var out idflow.DirectoryUser
			if err == nil {
				next.ID, next.Version = cur.ID, cur.Version
				out, err = s.store.ReplaceDirectoryUser(ctx, p, scope, next)
			}
			if errors.Is(err, idflow.ErrStale) && ifMatch == 0 && attempt < maxRetries {
				continue
			}
			s.Audit(ctx, p, "scim.user.update", resource, err)
			if err != nil {
				return idflow.DirectoryUser{}, err
			}
			if cur.Active != out.Active || cur.UserID != out.UserID {
				if cur.Active != out.Active {
					s.Audit(ctx, p, stateAction(!out.Active), "user/"+out.UserID, nil)
				}
				s.stateChanged(ctx, p, idflow.UserRef{TenantID: out.TenantID, UserID: out.UserID}, !out.Active)
				s.groupsChanged(ctx)
			}
			return out, nil
		}
	})
}

// SCIMDeleteUser deprovisions a user: the directory forgets them, they
// stay disabled (tokens issued before live until they expire), and their
// data is erased (EraseUser).
func (s *Service) SCIMDeleteUser(ctx context.Context, p idflow.Principal, id string, ifMatch int64) error {
	resource := "scim_user/" + id
	_, err := withScope(s, ctx, p, "scim.user.delete", resource, func(scope idflow.DirectoryScope) (struct{}, error) {
		cur, err := s.store.GetDirectoryUser(ctx, p, scope, id)
		if err == nil {
			err = versionCheck(ifMatch, cur.Version)
		}
		var out idflow.DirectoryUser
		if err == nil {
			out, err = s.store.DeleteDirectoryUser(ctx, p, scope, id)
		}
		s.Audit(ctx, p, "scim.user.delete", resource, err)
		if err != nil {
			return struct{}{}, err
		}
		s.stateChanged(ctx, p, idflow.UserRef{TenantID: out.TenantID, UserID: out.UserID}, true)
		s.groupsChanged(ctx)
		return struct{}{}, s.eraseDirectoryUser(ctx, p, idflow.UserRef{TenantID: out.TenantID, UserID: out.UserID})
	})
	return err
}

// SCIMCreateGroup provisions a group.
func (s *Service) SCIMCreateGroup(ctx context.Context, p idflow.Principal, g idflow.DirectoryGroup) (idflow.DirectoryGroup, error) {
	return withScope(s, ctx, p, "scim.group.create", "scim_group", func(scope idflow.DirectoryScope) (idflow.DirectoryGroup, error) {
		out, err := auditedID(s, ctx, p, "scim.group.create", "scim_group", func(g idflow.DirectoryGroup) string { return g.ID }, func() (idflow.DirectoryGroup, error) {
			return s.store.CreateDirectoryGroup(ctx, p, scope, g)
		})
		if err == nil {
			s.groupsChanged(ctx)
		}
		return out, err
	})
}

// SCIMGetGroup reads a provisioned group.
func (s *Service) SCIMGetGroup(ctx context.Context, p idflow.Principal, id string, withMembers bool) (idflow.DirectoryGroup, error) {
	return withScope(s, ctx, p, "scim.group.get", "scim_group/"+id, func(scope idflow.DirectoryScope) (idflow.DirectoryGroup, error) {
		return deniedOnly(s, ctx, p, "scim.group.get", "scim_group/"+id, func() (idflow.DirectoryGroup, error) {
			return s.store.GetDirectoryGroup(ctx, p, scope, id, withMembers)
		})
	})
}

// SCIMListGroups lists provisioned groups.
func (s *Service) SCIMListGroups(ctx context.Context, p idflow.Principal, f idflow.DirectoryFilter, page idflow.DirectoryPage) (idflow.DirectoryList[idflow.DirectoryGroup], error) {
	return withScope(s, ctx, p, "scim.group.list", "scim_group", func(scope idflow.DirectoryScope) (idflow.DirectoryList[idflow.DirectoryGroup], error) {
		return s.store.ListDirectoryGroups(ctx, p, scope, f, page)
	})
}

// SCIMUpdateGroup replaces (PUT) or patches (PATCH) a group: change
// answers what changes from the current group (read without members).
func (s *Service) SCIMUpdateGroup(ctx context.Context, p idflow.Principal, id string, ifMatch int64, change func(idflow.DirectoryGroup) (idflow.GroupChange, error)) (idflow.DirectoryGroup, error) {
	resource := "scim_group/" + id
	return withScope(s, ctx, p, "scim.group.update", resource, func(scope idflow.DirectoryScope) (idflow.DirectoryGroup, error) {
		out, err := s.updateGroup(ctx, p, scope, id, ifMatch, change)
		detail := ""
		if err == nil {
			detail = "members: " + strconv.Itoa(len(out.Members))
		}
		s.auditDetail(ctx, p, "scim.group.update", resource, detail, err)
		if err != nil {
			return idflow.DirectoryGroup{}, err
		}
		s.groupsChanged(ctx)
		return out, nil
	})
}

func (s *Service) updateGroup(ctx context.Context, p idflow.Principal, scope idflow.DirectoryScope, id string, ifMatch int64, change func(idflow.DirectoryGroup) (idflow.GroupChange, error)) (idflow.DirectoryGroup, error) {
	cur, err := s.store.GetDirectoryGroup(ctx, p, scope, id, false)
	if err != nil {
		return cur, err
	}
	if err := versionCheck(ifMatch, cur.Version); err != nil {
		return cur, err
	}
	ch, err := change(cur)
	if err != nil {
		return cur, err
	}
	out := cur
	if ch.DocChanged || ch.ReplaceMembers {
		g := ch.Group
		g.ID, g.Version, g.Members = cur.ID, cur.Version, ch.Members
		if out, err = s.store.ReplaceDirectoryGroup(ctx, p, scope, g, ch.ReplaceMembers); err != nil {
			return out, err
		}
	}
	if len(ch.Add) > 0 || len(ch.Remove) > 0 {
		if out, err = s.store.ChangeGroupMembers(ctx, p, scope, id, ch.Add, ch.Remove); err != nil {
			return out, err
		}
	}
	return out, nil
}

// SCIMDeleteGroup deprovisions a group.
func (s *Service) SCIMDeleteGroup(ctx context.Context, p idflow.Principal, id string, ifMatch int64) error {
	resource := "scim_group/" + id
	_, err := withScope(s, ctx, p, "scim.group.delete", resource, func(scope idflow.DirectoryScope) (struct{}, error) {
		cur, err := s.store.GetDirectoryGroup(ctx, p, scope, id, false)
		if err == nil {
			err = versionCheck(ifMatch, cur.Version)
		}
		if err == nil {
			_, err = s.store.DeleteDirectoryGroup(ctx, p, scope, id)
		}
		s.Audit(ctx, p, "scim.group.delete", resource, err)
		if err == nil {
			s.groupsChanged(ctx)
		}
		return struct{}{}, err
	})
	return err
}

// CancelRuns cancels every run of subject that has not ended, with
// cancel (the runner's): a deactivation step.
func (s *Service) CancelRuns(ctx context.Context, subject idflow.Principal, cancel func(ctx context.Context, p idflow.Principal, runID string) (idflow.Run, error)) error {
	page := idflow.Page{Limit: 200}
	var errs []error
	for range 100 { // at most 20,000 runs looked at
		list, err := s.store.ListRuns(ctx, subject, page)
		if err != nil {
			return err
		}
		for _, r := range list.Items {
			if r.Terminal() {
				continue
			}
			if _, err := cancel(ctx, subject, r.ID); err != nil && idflow.ErrorCode(err) != idflow.ECONFLICT {
				errs = append(errs, err)
			}
		}
		if list.NextCursor == "" {
			break
		}
		page.Cursor = list.NextCursor
	}
	return errors.Join(errs...)
}
