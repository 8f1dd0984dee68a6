package postgres

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/storetest"
)

// The benchmarks run against a real PostgreSQL 15 (testsvc: fsync off,
// shared_buffers 32 MB), through the store's own methods, so every
// operation pays what production pays: a transaction, set_config, the
// query, the commit. Commands and results: docs/POSTGRES.md.

// p50 answers the median of latencies.
func p50(latencies []time.Duration) time.Duration {
	sorted := slices.Clone(latencies)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// alternate runs a and b in turn, b.N times in all, and answers the
// latencies of each: both see the same machine at the same moments, so the
// comparison survives a noisy neighbour.
func alternate(bm *testing.B, a, b func(i int)) (la, lb []time.Duration) {
	la = make([]time.Duration, 0, bm.N/2+1)
	lb = make([]time.Duration, 0, bm.N/2+1)
	i := 0
	for bm.Loop() {
		t := time.Now()
		if i%2 == 0 {
			a(i / 2)
			la = append(la, time.Since(t))
		} else {
			b(i / 2)
			lb = append(lb, time.Since(t))
		}
		i++
	}
	if len(lb) == 0 { // b.N == 1
		t := time.Now()
		b(0)
		lb = append(lb, time.Since(t))
	}
	return la, lb
}

// superuser connects to the fixture's database as the superuser, which row-
// level security does not hold: only for seeding and maintenance.
func (f *fixture) superuser(b testing.TB) *pgx.Conn {
	b.Helper()
	conn, err := pgx.Connect(context.Background(), withDatabase(b, f.pg.SuperuserURL(), f.name))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// seedInterleaved inserts rows of users × perUser through insert, round by
// round (row i of every user, then row i+1), so that a user's rows are
// scattered over the whole table, as when many users write at once: the
// worst case for reading one user's rows. insert gets the user indexes and
// row numbers of one batch.
func seedInterleaved(b *testing.B, users, perUser int, insert func(us, is []int) error) {
	b.Helper()
	const batch = 10000
	var us, is []int
	flush := func() {
		if len(us) == 0 {
			return
		}
		if err := insert(us, is); err != nil {
			b.Fatal(err)
		}
		us, is = us[:0], is[:0]
	}
	for i := range perUser {
		for u := range users {
			us, is = append(us, u), append(is, i)
			if len(us) == batch {
				flush()
			}
		}
	}
	flush()
}

func vacuum(b *testing.B, su *pgx.Conn, table string) {
	b.Helper()
	if _, err := su.Exec(context.Background(), `VACUUM (ANALYZE) `+table); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkListSessionsRLS lists the first page of a user's sessions
// (1,000 users × 50 sessions, interleaved) through ListSessions, in turn on
// two identical databases of one server: one with the row-level security
// policies on, a copy with RLS disabled on sessions (ALTER TABLE … DISABLE
// ROW LEVEL SECURITY, as the owner). Same query, same data, same run.
func BenchmarkListSessionsRLS(b *testing.B) {
	const users, perUser = 1000, 50
	ctx := context.Background()
	sv := newServer(b)
	on := sv.database(b)
	su := on.superuser(b)
	start := time.Now()
	base := time.Now().UTC().Truncate(time.Microsecond)
	seedInterleaved(b, users, perUser, func(us, is []int) error {
		ids, owners, titles := make([]string, len(us)), make([]string, len(us)), make([]string, len(us))
		times := make([]time.Time, len(us))
		for k := range us {
			ids[k], owners[k], titles[k] = idflow.NewID(idflow.PrefixSession), storetest.BenchUser(us[k]).UserID, fmt.Sprint("chat ", is[k])
			times[k] = base.Add(time.Duration(is[k]*users+us[k]) * time.Microsecond)
		}
		_, err := su.Exec(ctx, `INSERT INTO sessions (id, user_id, title, created_at, updated_at)
			SELECT id, u, t, at, at FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS s(id, u, t, at)`,
			ids, owners, titles, times)
		return err
	})
	vacuum(b, su, "sessions")
	su.Close(ctx)
	b.Logf("%d sessions seeded in %v", users*perUser, time.Since(start).Round(time.Millisecond))

	off := sv.copyOf(b, on)
	on.s, off.s = openStore(b, on.appURL), openStore(b, off.appURL)
	// After Open, which refuses a user table without RLS.
	if _, err := connect(b, off.ownerURL).Exec(ctx, `ALTER TABLE sessions DISABLE ROW LEVEL SECURITY`); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		s    *DB
		want int
	}{{on.s, 0}, {off.s, users * perUser}} {
		var n int
		if err := c.s.Pool().QueryRow(ctx, `SELECT count(*) FROM sessions`).Scan(&n); err != nil || n != c.want {
			b.Fatalf("setup: an unscoped count without identity sees %d sessions (%v), want %d", n, err, c.want)
		}
	}
	list := func(s *DB) func(i int) {
		return func(i int) {
			l, err := s.ListSessions(ctx, storetest.BenchUser((i*7)%users), idflow.SessionFilter{}, idflow.Page{})
			if err != nil || len(l.Items) != idflow.DefaultPageLimit {
				b.Fatalf("ListSessions: %d items, %v", len(l.Items), err)
			}
		}
	}
	list(on.s)(0) // warm both pools
	list(off.s)(0)
	b.Run("first-page", func(b *testing.B) {
		lon, loff := alternate(b, list(on.s), list(off.s))
		pon, poff := p50(lon), p50(loff)
		b.ReportMetric(ms(pon), "p50-rls-ms")
		b.ReportMetric(ms(poff), "p50-norls-ms")
		b.ReportMetric(100*(float64(pon)/float64(poff)-1), "rls-overhead-%")
	})
}

const factsPerUser = 1000

// seedFacts gives each of users factsPerUser facts, interleaved.
func seedFacts(b *testing.B, f *fixture, c *storetest.Corpus, users int) {
	b.Helper()
	ctx := context.Background()
	su := f.superuser(b)
	start := time.Now()
	base := time.Now().UTC().Truncate(time.Microsecond)
	seedInterleaved(b, users, factsPerUser, func(us, is []int) error {
		ids, owners, contents := make([]string, len(us)), make([]string, len(us)), make([]string, len(us))
		times := make([]time.Time, len(us))
		for k := range us {
			ids[k], owners[k], contents[k] = idflow.NewID(idflow.PrefixFact), storetest.BenchUser(us[k]).UserID, c.Sentence()
			times[k] = base.Add(time.Duration(is[k]*users+us[k]) * time.Microsecond)
		}
		_, err := su.Exec(ctx, `INSERT INTO facts (id, user_id, content, created_at, updated_at)
			SELECT id, u, c, at, at FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS f(id, u, c, at)`,
			ids, owners, contents, times)
		return err
	})
	vacuum(b, su, "facts")
	b.Logf("users=%d: %d facts seeded in %v", users, users*factsPerUser, time.Since(start).Round(time.Millisecond))
}

// BenchmarkSearchFacts measures SearchFacts (one to three Zipf-distributed
// words, limit 10, a different user each time) on two databases of one
// server, in turn: 10 users × 1,000 facts, and 1,000 users × 1,000 facts
// (one million rows; each user's facts scattered over the whole table, the
// worst case). "clustered" repeats it after CLUSTER facts USING
// facts_user_created on both (a maintenance step the owner can run, or
// pg_repack online), which puts each user's facts next to each other.
func BenchmarkSearchFacts(b *testing.B) {
	ctx := context.Background()
	sv := newServer(b)
	small, large := sv.fixture(b), sv.fixture(b)
	seedFacts(b, small, storetest.NewCorpus(1), 10)
	seedFacts(b, large, storetest.NewCorpus(1), 1000)
	queries := storetest.NewCorpus(2).Queries(64)
	hits := 0
	search := func(f *fixture, users int) func(i int) {
		return func(i int) {
			got, err := f.s.SearchFacts(ctx, storetest.BenchUser((i*7)%users), queries[i%len(queries)], 10)
			if err != nil {
				b.Fatal(err)
			}
			hits += len(got)
		}
	}
	run := func(b *testing.B) {
		l10, l1000 := alternate(b, search(small, 10), search(large, 1000))
		p10, p1000 := p50(l10), p50(l1000)
		b.ReportMetric(ms(p10), "p50-10users-ms")
		b.ReportMetric(ms(p1000), "p50-1000users-ms")
		b.ReportMetric(float64(p1000)/float64(p10), "ratio")
	}
	b.Run("scattered", run)
	for _, f := range []*fixture{small, large} {
		if _, err := connect(b, f.ownerURL).Exec(ctx, `CLUSTER facts USING facts_user_created`); err != nil {
			b.Fatal(err)
		}
		vacuum(b, f.superuser(b), "facts")
	}
	b.Run("clustered", run)
	if hits == 0 {
		b.Fatal("no search found anything")
	}
}
