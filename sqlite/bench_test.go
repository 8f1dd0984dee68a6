package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/storetest"
)

func openBench(b *testing.B) *DB {
	b.Helper()
	db, err := Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// p50 reports the median of latencies in milliseconds.
func reportP50(b *testing.B, latencies []time.Duration) {
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	b.ReportMetric(float64(latencies[len(latencies)/2])/float64(time.Millisecond), "p50-ms")
}

const factsPerUser = 1000

// seedFacts gives each of users factsPerUser facts, 50 users per transaction.
func seedFacts(ctx context.Context, db *DB, c *storetest.Corpus, users int) error {
	const perTx = 50
	at := time.Now().UTC().Truncate(time.Microsecond)
	for first := 0; first < users; first += perTx {
		err := db.WithTx(ctx, func(tx *sql.Tx) error {
			var facts []idflow.Fact
			for u := first; u < min(first+perTx, users); u++ {
				owner := storetest.BenchUser(u).UserID
				for range factsPerUser {
					at = at.Add(time.Microsecond)
					facts = append(facts, idflow.Fact{ID: idflow.NewID(idflow.PrefixFact), UserID: owner, Content: c.Sentence(), CreatedAt: at, UpdatedAt: at})
				}
			}
			return insertFacts(ctx, txn{tx: tx}, facts)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func BenchmarkSearchFacts(b *testing.B) {
	for _, users := range []int{10, 1000} {
		ctx := context.Background()
		db := openBench(b)
		c := storetest.NewCorpus(1)
		start := time.Now()
		if err := seedFacts(ctx, db, c, users); err != nil {
			b.Fatal(err)
		}
		b.Logf("users=%d: %d facts inserted in %v", users, users*factsPerUser, time.Since(start).Round(time.Millisecond))

		queries := c.Queries(64)
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			i := 0
			for b.Loop() {
				t := time.Now()
				if _, err := db.SearchFacts(ctx, storetest.BenchUser(i%users), queries[i%len(queries)], 10); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t))
				i++
			}
			reportP50(b, lat)
		})
	}
}

func BenchmarkListSessions(b *testing.B) {
	const users, perUser = 100, 500
	ctx := context.Background()
	db := openBench(b)
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO sessions (id, user_id, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		at := time.Now().UnixNano()
		for u := range users {
			owner := storetest.BenchUser(u).UserID
			for i := range perUser {
				at += int64(time.Microsecond)
				t := at
				if _, err := stmt.ExecContext(ctx, idflow.NewID(idflow.PrefixSession), owner, fmt.Sprint("chat ", i), t, t); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	first, err := db.ListSessions(ctx, storetest.BenchUser(0), idflow.SessionFilter{}, idflow.Page{})
	if err != nil || len(first.Items) != idflow.DefaultPageLimit {
		b.Fatalf("setup: %d sessions, %v", len(first.Items), err)
	}
	b.Run("first-page", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		i := 0
		for b.Loop() {
			t := time.Now()
			if _, err := db.ListSessions(ctx, storetest.BenchUser(i%users), idflow.SessionFilter{}, idflow.Page{}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t))
			i++
		}
		reportP50(b, lat)
	})
	b.Run("cursor-page", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			t := time.Now()
			if _, err := db.ListSessions(ctx, storetest.BenchUser(0), idflow.SessionFilter{}, idflow.Page{Cursor: first.NextCursor}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t))
		}
		reportP50(b, lat)
	})
}
