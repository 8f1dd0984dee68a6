package auth

import (
	"context"
	"strconv"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/lifecycle"
)

// disabledSource is a store with n disabled users (none of them the
// benchmark's) and no directory groups.
type disabledSource struct{ n int }

func (s disabledSource) DisabledUsers(context.Context) ([]idflow.UserRef, error) {
	out := make([]idflow.UserRef, s.n)
	for i := range out {
		out[i] = idflow.UserRef{TenantID: authtest.DefaultTenantID, UserID: "disabled-" + strconv.Itoa(i)}
	}
	return out, nil
}

func (disabledSource) DirectoryGroupsOf(context.Context, idflow.Principal) ([]string, error) {
	return nil, nil
}

// BenchmarkVerifyCachedRevocation is a cached verify through the
// Authenticator, without the lifecycle (off) and with it (on: 10,000
// disabled users, the user's directory groups cached): the difference is
// what the revocation check and the directory groups add to every request
// (docs/BENCHMARKS.md).
func BenchmarkVerifyCachedRevocation(b *testing.B) {
	v, _, tok := benchSetup(b, 0)
	set := lifecycle.New(lifecycle.Config{Source: disabledSource{n: 10_000}})
	if err := set.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = set.Close() })
	for _, c := range []struct {
		name string
		a    *Authenticator
	}{
		{"off", New(Config{Bearer: v})},
		{"on", New(Config{Bearer: v, Revocations: set, Directory: set})},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			if _, err := c.a.VerifyToken(ctx, tok, nil); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.a.VerifyToken(ctx, tok, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAdmit is the admit step alone (what BenchmarkVerifyCachedRevocation
// adds), so that the difference is not lost in a shared machine's noise.
func BenchmarkAdmit(b *testing.B) {
	v, _, tok := benchSetup(b, 0)
	set := lifecycle.New(lifecycle.Config{Source: disabledSource{n: 10_000}})
	if err := set.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = set.Close() })
	verified, err := v.Verify(context.Background(), tok)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		a    *Authenticator
	}{
		{"off", New(Config{Bearer: v})},
		{"on", New(Config{Bearer: v, Revocations: set, Directory: set})},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.a.admit(ctx, verified.Principal); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
