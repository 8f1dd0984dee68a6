// Package authtest builds Principals and tokens for tests. Only _test.go
// files may import it (a test over the source tree enforces it), so no
// production path can mint an identity this way.
package authtest

import (
	"time"

	"github.com/idflow/idflow"
)

// User returns a verified user Principal.
func User(id, tenant string, roles ...string) idflow.Principal {
	if roles == nil {
		roles = []string{}
	}
	return idflow.Principal{
		UserID: id, TenantID: tenant, Email: id + "@" + tenant + ".example", Name: id,
		Roles: roles, Groups: []string{}, Scopes: []string{}, Issuer: "https://issuer.test",
		Kind: idflow.KindUser, AuthMethod: idflow.AuthBearer, ExpiresAt: time.Now().Add(time.Hour),
	}
}

// App returns an app-only Principal.
func App(clientID string, roles ...string) idflow.Principal {
	if roles == nil {
		roles = []string{}
	}
	return idflow.Principal{
		UserID: clientID, ClientID: clientID, Roles: roles, Groups: []string{}, Scopes: []string{},
		Issuer: "https://issuer.test", Kind: idflow.KindApp, AuthMethod: idflow.AuthBearer,
		ExpiresAt: time.Now().Add(time.Hour),
	}
}

// Malformed returns a Principal that no authentication path produces, with
// only userID and kind set: for tests proving that a store or handler
// refuses it (the zero Principal, a user id without a kind, a kind without
// a user id). Code outside package auth may not build a Principal itself,
// not even a broken one (principal_construction_test.go).
func Malformed(userID string, kind idflow.Kind) idflow.Principal {
	return idflow.Principal{UserID: userID, Kind: kind}
}

// TenantApp returns an app-only Principal of a tenant (an Entra app-only
// token carries its tid): a SCIM provisioning client.
func TenantApp(clientID, tenant string) idflow.Principal {
	p := App(clientID)
	p.TenantID = tenant
	return p
}
