package auth

import (
	"slices"

	"github.com/idflow/idflow"
)

// FromSnapshot rebuilds the Principal a background job acts as. It is the
// only way a worker gets an identity: from the snapshot stored with its job,
// never from a token and never from a default.
func FromSnapshot(s idflow.Snapshot) (idflow.Principal, error) {
	if blank(s.UserID) {
		return idflow.Principal{}, idflow.Errorf(idflow.EUNAUTHORIZED, "job snapshot has no user")
	}
	if err := checkUserID(s.UserID); err != nil {
		return idflow.Principal{}, userIDError("the job snapshot", err)
	}
	return idflow.Principal{
		UserID:     s.UserID,
		TenantID:   s.TenantID,
		Email:      s.Email,
		Name:       s.Name,
		Roles:      nonNil(slices.Clone(s.Roles)),
		Groups:     nonNil(slices.Clone(s.Groups)),
		Scopes:     []string{},
		Issuer:     s.Issuer,
		Kind:       idflow.KindUser,
		AuthMethod: idflow.AuthJob,
	}, nil
}
