package storetest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// The stores' benchmarks share their data: synthetic users and a corpus
// of English-ish text.

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

// Corpus generates deterministic, English-ish text.
type Corpus struct {
	rng   *rand.Rand
	zipf  *rand.Zipf
	vocab []string
}

// NewCorpus returns the corpus of seed: the same seed, the same text.
func NewCorpus(seed uint64) *Corpus {
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
	return &Corpus{rng: rng, vocab: vocab, zipf: rand.NewZipf(rng, 1.1, 2, uint64(len(vocab)-1))}
}

// Word answers a word.
func (c *Corpus) Word() string { return c.vocab[c.zipf.Uint64()] }

// Sentence answers a sentence of 6 to 25 words.
func (c *Corpus) Sentence() string {
	n := 6 + c.rng.IntN(20)
	words := make([]string, n)
	for i := range words {
		words[i] = c.Word()
	}
	words[0] = strings.ToUpper(words[0][:1]) + words[0][1:]
	return strings.Join(words, " ") + "."
}

// Queries answers n search queries of one to three words.
func (c *Corpus) Queries(n int) []string {
	out := make([]string, n)
	for i := range out {
		words := make([]string, 1+i%3)
		for j := range words {
			words[j] = c.Word()
		}
		out[i] = strings.Join(words, " ")
	}
	return out
}

// BenchUser is the Principal of synthetic user i.
func BenchUser(i int) idflow.Principal {
	return authtest.User(fmt.Sprintf("9f1c2d3e-0000-4000-8000-%012d", i), "t-bench")
}
