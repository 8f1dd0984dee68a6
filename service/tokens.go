package service

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
)

// TokenRequest is what a user asks for in a personal access token.
type TokenRequest struct {
	Name      string
	Scopes    []string
	ExpiresIn int64 // seconds; 0 takes idflow.DefaultTokenLifetime
}

// tokenUseEvery is the cadence of a token's last-used time and of the
// audit of its use: the first use, then at most once a minute per token,
// so a busy script costs no write per request.
const tokenUseEvery = time.Minute

// maxTokensTracked bounds the memory of recent uses; past it the memory is
// forgotten (a few extra writes, never a missed first use: that is read
// from the store).
const maxTokensTracked = 100000

// OwnScopes are the personal-access-token scopes p holds itself: every
// scope for a user signed in any other way; a personal access token's own
// scopes for a PAT (which never reaches token creation: the routes refuse
// it, and so does CreateToken).
func OwnScopes(p idflow.Principal) []string {
	if p.AuthMethod == idflow.AuthPersonalToken {
		return slices.Clone(p.Scopes)
	}
	return slices.Clone(idflow.TokenScopes)
}

// notByToken refuses a personal access token on the token routes: a PAT
// never lists, makes or revokes PATs.
func notByToken(p idflow.Principal) error {
	if p.AuthMethod == idflow.AuthPersonalToken {
		return idflow.Errorf(idflow.EFORBIDDEN, "a personal access token cannot manage personal access tokens")
	}
	return nil
}

// CreateToken mints a personal access token for p: the token (shown once,
// never stored) and what is kept of it. Its scopes must be p's own.
func (s *Service) CreateToken(ctx context.Context, p idflow.Principal, in TokenRequest) (idflow.PersonalToken, string, error) {
	var raw string
	t, err := auditedID(s, ctx, p, "token.create", "token", func(t idflow.PersonalToken) string { return t.ID }, func() (idflow.PersonalToken, error) {
		if err := notByToken(p); err != nil {
			return idflow.PersonalToken{}, err
		}
		lifetime := idflow.DefaultTokenLifetime
		if in.ExpiresIn != 0 {
			if in.ExpiresIn < int64(idflow.MinTokenLifetime/time.Second) || in.ExpiresIn > int64(idflow.MaxTokenLifetime/time.Second) {
				return idflow.PersonalToken{}, idflow.Errorf(idflow.EINVALID, "expires_in is in seconds, from %d (a minute) to %d (a year)",
					int64(idflow.MinTokenLifetime/time.Second), int64(idflow.MaxTokenLifetime/time.Second))
			}
			lifetime = time.Duration(in.ExpiresIn) * time.Second
		}
		own := OwnScopes(p)
		for _, sc := range in.Scopes {
			if slices.Contains(idflow.TokenScopes, sc) && !slices.Contains(own, sc) {
				return idflow.PersonalToken{}, idflow.Errorf(idflow.EFORBIDDEN, "you do not hold the scope %q yourself", sc)
			}
		}
		t := idflow.PersonalToken{Name: in.Name, Scopes: in.Scopes, ExpiresAt: s.now().Add(lifetime)}
		if err := t.Validate(); err != nil {
			return idflow.PersonalToken{}, err
		}
		var hash string
		var err error
		if raw, hash, err = auth.NewPersonalToken(); err != nil {
			return idflow.PersonalToken{}, fmt.Errorf("personal token: %w", err)
		}
		return s.store.CreatePersonalToken(ctx, p, t, hash)
	})
	if err != nil {
		return idflow.PersonalToken{}, "", err
	}
	return t, raw, nil
}

// ListTokens lists p's personal access tokens (never the tokens).
func (s *Service) ListTokens(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.PersonalToken], error) {
	if err := notByToken(p); err != nil {
		s.Audit(ctx, p, "token.list", "tokens", err)
		return idflow.List[idflow.PersonalToken]{Items: []idflow.PersonalToken{}}, err
	}
	return s.store.ListPersonalTokens(ctx, p, page)
}

// RevokeToken deletes p's token id: from the next request on, on every
// replica, it authenticates nothing (each request reads the store).
func (s *Service) RevokeToken(ctx context.Context, p idflow.Principal, id string) error {
	_, err := audited(s, ctx, p, "token.revoke", "token/"+id, func() (struct{}, error) {
		if err := notByToken(p); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, s.store.DeletePersonalToken(ctx, p, id)
	})
	return err
}

// LookupPersonalToken is the store's lookup (auth.PersonalTokens).
func (s *Service) LookupPersonalToken(ctx context.Context, hash string) (idflow.TokenGrant, error) {
	return s.store.LookupPersonalToken(ctx, hash)
}

// PersonalTokenUsed records a token's use (auth.PersonalTokens): its first
// use, then at most once per tokenUseEvery per token and replica, it
// updates last_used_at and audits token.use.
func (s *Service) PersonalTokenUsed(ctx context.Context, p idflow.Principal, g idflow.TokenGrant) {
	now := s.now()
	if last := g.Token.LastUsedAt; last != nil && now.Sub(*last) < tokenUseEvery {
		return
	}
	s.tokensMu.Lock()
	if last, ok := s.tokensUsed[g.Token.ID]; ok && now.Sub(last) < tokenUseEvery {
		s.tokensMu.Unlock()
		return
	}
	if len(s.tokensUsed) >= maxTokensTracked {
		clear(s.tokensUsed)
	}
	s.tokensUsed[g.Token.ID] = now
	s.tokensMu.Unlock()
	ctx = context.WithoutCancel(ctx)
	err := s.store.TouchPersonalToken(ctx, p, g.Token.ID, now)
	if err != nil {
		s.log.WarnContext(ctx, "personal token last use", "err", err)
	}
	detail := "scopes " + strings.Join(g.Token.Scopes, " ")
	if g.Token.LastUsedAt == nil {
		detail = "first use; " + detail
	}
	s.auditDetail(ctx, p, "token.use", "token/"+g.Token.ID, detail, err)
}
