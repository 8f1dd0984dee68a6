package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/idflow/idflow"
)

func day(s string) time.Time {
	t, err := time.Parse(idflow.DayFormat, s)
	if err != nil {
		panic(err)
	}
	return t.Add(12 * time.Hour)
}

func usageRow(user, d, model string, prompt, completion, calls int64) idflow.UsageDay {
	return idflow.UsageDay{UserID: user, Day: d, Model: model, PromptTokens: prompt, CompletionTokens: completion, Calls: calls}
}

func testUsage(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	if got := must(s.ListUsage(ctx, alice, day("2026-03-01"), day("2026-03-31")))(t); got == nil || len(got) != 0 {
		t.Fatalf("a new store answers %#v; want an empty, non-nil list", got)
	}
	rec := func(model string, prompt, completion int64, at time.Time) {
		t.Helper()
		ok(t, s.RecordUsage(ctx, alice, model, idflow.Usage{PromptTokens: prompt, CompletionTokens: completion}, at))
	}
	rec("gpt-a", 10, 5, day("2026-03-02"))
	rec("gpt-a", 7, 3, day("2026-03-02").Add(11*time.Hour)) // 23:00 UTC, same day
	rec("gpt-b", 1, 1, day("2026-03-02"))
	rec("gpt-a", 0, 0, day("2026-03-03")) // a call that reported no tokens still counts
	// 20:30 at UTC-5 is 01:30 UTC the next day: days are UTC days.
	east := time.FixedZone("UTC-5", -5*3600)
	rec("gpt-a", 2, 2, time.Date(2026, 3, 3, 20, 30, 0, 0, east))
	rec("gpt-a", 100, 100, day("2026-02-28")) // outside the range asked below

	got := must(s.ListUsage(ctx, alice, day("2026-03-01"), day("2026-03-31")))(t)
	sameJSON(t, got, []idflow.UsageDay{
		usageRow(alice.UserID, "2026-03-02", "gpt-a", 17, 8, 2),
		usageRow(alice.UserID, "2026-03-02", "gpt-b", 1, 1, 1),
		usageRow(alice.UserID, "2026-03-03", "gpt-a", 0, 0, 1),
		usageRow(alice.UserID, "2026-03-04", "gpt-a", 2, 2, 1),
	})
	// Both ends are included, and taken as UTC days whatever the zone.
	got = must(s.ListUsage(ctx, alice, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 3, 18, 59, 0, 0, east)))(t)
	if len(got) != 3 || got[0].Day != "2026-03-02" || got[2].Day != "2026-03-03" {
		t.Fatalf("2026-03-02..03: %+v", got)
	}
	if got := must(s.ListUsage(ctx, alice, day("2026-02-28"), day("2026-02-28")))(t); len(got) != 1 || got[0].Calls != 1 {
		t.Fatalf("one day: %+v", got)
	}
	for name, bad := range map[string]func() error{
		"no model": func() error { return s.RecordUsage(ctx, alice, "", idflow.Usage{}, time.Now()) },
		"long model": func() error {
			return s.RecordUsage(ctx, alice, strings.Repeat("m", idflow.MaxUsageModelLen+1), idflow.Usage{}, time.Now())
		},
		"negative prompt": func() error { return s.RecordUsage(ctx, alice, "m", idflow.Usage{PromptTokens: -1}, time.Now()) },
		"negative completion": func() error {
			return s.RecordUsage(ctx, alice, "m", idflow.Usage{CompletionTokens: -5}, time.Now())
		},
		"range ends before it starts": func() error {
			_, err := s.ListUsage(ctx, alice, day("2026-03-02"), day("2026-03-01"))
			return err
		},
	} {
		t.Run(name, func(t *testing.T) { wantCode(t, bad(), idflow.EINVALID) })
	}
	// The refused calls changed nothing.
	sameJSON(t, must(s.ListUsage(ctx, alice, day("2026-03-01"), day("2026-03-31")))(t), []idflow.UsageDay{
		usageRow(alice.UserID, "2026-03-02", "gpt-a", 17, 8, 2),
		usageRow(alice.UserID, "2026-03-02", "gpt-b", 1, 1, 1),
		usageRow(alice.UserID, "2026-03-03", "gpt-a", 0, 0, 1),
		usageRow(alice.UserID, "2026-03-04", "gpt-a", 2, 2, 1),
	})
}

// testUsageIsolation: users of the same tenant, of another tenant, and an
// app named like a user never read or add to each other's usage, even on the
// same day and model.
func testUsageIsolation(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	at := day("2026-05-10")
	ok(t, s.RecordUsage(ctx, alice, "gpt-a", idflow.Usage{PromptTokens: 40, CompletionTokens: 2}, at))
	ok(t, s.RecordUsage(ctx, bob, "gpt-a", idflow.Usage{PromptTokens: 5, CompletionTokens: 5}, at))
	ok(t, s.RecordUsage(ctx, carol, "gpt-a", idflow.Usage{PromptTokens: 7, CompletionTokens: 7}, at))
	from, to := day("2026-05-01"), day("2026-05-31")
	sameJSON(t, must(s.ListUsage(ctx, alice, from, to))(t), []idflow.UsageDay{usageRow(alice.UserID, "2026-05-10", "gpt-a", 40, 2, 1)})
	sameJSON(t, must(s.ListUsage(ctx, bob, from, to))(t), []idflow.UsageDay{usageRow(bob.UserID, "2026-05-10", "gpt-a", 5, 5, 1)})
	sameJSON(t, must(s.ListUsage(ctx, carol, from, to))(t), []idflow.UsageDay{usageRow(carol.UserID, "2026-05-10", "gpt-a", 7, 7, 1)})
	// The admin role opens nothing here: the admin reads their own usage.
	if got := must(s.ListUsage(ctx, admin, from, to))(t); len(got) != 0 {
		t.Fatalf("the admin's own usage lists %+v", got)
	}
}

// testAdminUsage: a tenant admin reads the totals of their own tenant only,
// and one user's rows only for a user of that tenant; the platform admin
// reads every tenant; nobody else reads any.
func testAdminUsage(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	at := day("2026-06-10")
	ok(t, s.RecordUsage(ctx, alice, "gpt-a", idflow.Usage{PromptTokens: 40, CompletionTokens: 2}, at))
	ok(t, s.RecordUsage(ctx, bob, "gpt-a", idflow.Usage{PromptTokens: 5, CompletionTokens: 5}, at))
	ok(t, s.RecordUsage(ctx, carol, "gpt-a", idflow.Usage{PromptTokens: 7, CompletionTokens: 7}, at))
	from, to := day("2026-06-01"), day("2026-06-30")

	tenant := must(s.AdminListUsage(ctx, admin, scopeOf(t, admin), "", from, to))(t)
	want := idflow.UsageDay{TenantID: "t-one", Day: "2026-06-10", Model: "gpt-a", PromptTokens: 45, CompletionTokens: 7, Calls: 2, Users: 2}
	sameJSON(t, tenant, []idflow.UsageDay{want})

	one := must(s.AdminListUsage(ctx, admin, scopeOf(t, admin), bob.UserID, from, to))(t)
	bobs := usageRow(bob.UserID, "2026-06-10", "gpt-a", 5, 5, 1)
	bobs.TenantID = "t-one"
	sameJSON(t, one, []idflow.UsageDay{bobs})
	// carol is in t-two: as absent as a user who never called a model.
	if got := must(s.AdminListUsage(ctx, admin, scopeOf(t, admin), carol.UserID, from, to))(t); len(got) != 0 {
		t.Fatalf("t-one's admin read carol's (t-two) usage: %+v", got)
	}
	all := must(s.AdminListUsage(ctx, root, scopeOf(t, root), "", from, to))(t)
	sameJSON(t, all, []idflow.UsageDay{want, {TenantID: "t-two", Day: "2026-06-10", Model: "gpt-a", PromptTokens: 7, CompletionTokens: 7, Calls: 1, Users: 1}})
	if got := must(s.AdminListUsage(ctx, root, scopeOf(t, root), carol.UserID, from, to))(t); len(got) != 1 || got[0].UserID != carol.UserID {
		t.Fatalf("the platform admin on carol: %+v", got)
	}
	// Fails closed: the zero scope, a scope built for someone else, an app.
	for name, call := range map[string]func() error{
		"zero scope":      func() error { _, err := s.AdminListUsage(ctx, admin, idflow.AdminScope{}, "", from, to); return err },
		"another's scope": func() error { _, err := s.AdminListUsage(ctx, alice, scopeOf(t, admin), "", from, to); return err },
		"platform scope, tenant admin": func() error {
			_, err := s.AdminListUsage(ctx, admin, scopeOf(t, root), "", from, to)
			return err
		},
		"app-only": func() error { _, err := s.AdminListUsage(ctx, svc, scopeOf(t, admin), "", from, to); return err },
	} {
		if err := call(); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
			t.Errorf("%s: %v; want %s", name, err, idflow.EFORBIDDEN)
		}
	}
}
