package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// commonWords are frequent English words; text draws from them and from a
// long tail of made-up but pronounceable words, with a Zipf distribution, so
// that a term's document frequency spans from "most facts" to "a handful".
var commonWords = strings.Fields(`the of and to in is that for it as with was on be at by this had not are but
from or have an they which one you were all we her she there would their will when who him been has more if no
out do so can what up said about other into than its time only could new them man some these then two first may
any like now my such make over our even most me state after also made many did must before back see through way
where get much go well your know should down work year because come people just say each those take day good
how long very still own find here thing give many great help team meeting budget project report customer
release invoice travel flight hotel doctor appointment birthday password office kitchen garden review plan
schedule deadline contract payment bank email phone address family holiday weekend lunch dinner coffee tea`)

const syllables = "ka lo mi ne ra su ti po ve xa qui zo ber tan fel gri mos pla dun sek vor"

// corpus generates deterministic, English-ish sentences.
type corpus struct {
	rng   *rand.Rand
	zipf  *rand.Zipf
	vocab []string
}

func newCorpus(seed uint64) *corpus {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	syl := strings.Fields(syllables)
	seen := make(map[string]bool)
	vocab := slices.Clone(commonWords)
	for len(vocab) < 20000 {
		var b strings.Builder
		for range 2 + rng.IntN(3) {
			b.WriteString(syl[rng.IntN(len(syl))])
		}
		if w := b.String(); !seen[w] {
			seen[w] = true
			vocab = append(vocab, w)
		}
	}
	return &corpus{rng: rng, vocab: vocab, zipf: rand.NewZipf(rng, 1.1, 2, uint64(len(vocab)-1))}
}

func (c *corpus) word() string { return c.vocab[c.zipf.Uint64()] }

func (c *corpus) sentence() string {
	n := 6 + c.rng.IntN(20)
	words := make([]string, n)
	for i := range words {
		words[i] = c.word()
	}
	words[0] = strings.ToUpper(words[0][:1]) + words[0][1:]
	return strings.Join(words, " ") + "."
}

// benchUser is the Principal of synthetic user i.
func benchUser(i int) idflow.Principal {
	return authtest.User(fmt.Sprintf("9f1c2d3e-0000-4000-8000-%012d", i), "t-bench")
}

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
func seedFacts(ctx context.Context, db *DB, c *corpus, users int) error {
	const perTx = 50
	for first := 0; first < users; first += perTx {
		err := db.WithTx(ctx, func(tx *sql.Tx) error {
			ins, err := prepareFactInsert(ctx, tx)
			if err != nil {
				return err
			}
			defer ins.close()
			for u := first; u < min(first+perTx, users); u++ {
				owner := benchUser(u).UserID
				for range factsPerUser {
					t := db.now()
					f := idflow.Fact{ID: idflow.NewID(idflow.PrefixFact), UserID: owner, Content: c.sentence(), CreatedAt: t, UpdatedAt: t}
					if err := ins.exec(ctx, f); err != nil {
						return err
					}
				}
			}
			return nil
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
		c := newCorpus(1)
		start := time.Now()
		if err := seedFacts(ctx, db, c, users); err != nil {
			b.Fatal(err)
		}
		b.Logf("users=%d: %d facts inserted in %v", users, users*factsPerUser, time.Since(start).Round(time.Millisecond))

		queries := make([]string, 64)
		for i := range queries {
			words := make([]string, 1+i%3)
			for j := range words {
				words[j] = c.word()
			}
			queries[i] = strings.Join(words, " ")
		}
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			i := 0
			for b.Loop() {
				t := time.Now()
				if _, err := db.SearchFacts(ctx, benchUser(i%users), queries[i%len(queries)], 10); err != nil {
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
		for u := range users {
			owner := benchUser(u).UserID
			for i := range perUser {
				t := nanos(db.now())
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
	first, err := db.ListSessions(ctx, benchUser(0), idflow.SessionFilter{}, idflow.Page{})
	if err != nil || len(first.Items) != idflow.DefaultPageLimit {
		b.Fatalf("setup: %d sessions, %v", len(first.Items), err)
	}
	b.Run("first-page", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		i := 0
		for b.Loop() {
			t := time.Now()
			if _, err := db.ListSessions(ctx, benchUser(i%users), idflow.SessionFilter{}, idflow.Page{}); err != nil {
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
			if _, err := db.ListSessions(ctx, benchUser(0), idflow.SessionFilter{}, idflow.Page{Cursor: first.NextCursor}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t))
		}
		reportP50(b, lat)
	})
}
