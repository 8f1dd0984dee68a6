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
