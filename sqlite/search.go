package sqlite

import (
	"context"
	"crypto/sha256"
	"strings"
	"unicode"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
)

// Full-text search of facts with FTS5: every fact's words are indexed in
// facts_fts, each prefixed with its owner's namespace (ftsText), so that a
// search reads and ranks only the caller's own postings.

// insertFacts writes facts and their full-text entries
// (sqlstore.Backend), through the writer's statements prepared once.
func insertFacts(ctx context.Context, t sqlstore.Tx, facts []idflow.Fact) error {
	tx := t.(txn)
	fact := tx.stmt(ctx, `INSERT INTO facts (`+sqlstore.FactInsertCols+`) VALUES (?, ?, ?, ?, ?, ?) RETURNING pk`)
	fts := tx.stmt(ctx, `INSERT INTO facts_fts (rowid, body, user_id) VALUES (?, ?, ?)`)
	for _, f := range facts {
		var doc any
		if f.SourceDocumentID != "" {
			doc = f.SourceDocumentID
		}
		var pk int64
		if err := fact.QueryRowContext(ctx, f.ID, f.UserID, f.Content, doc, f.CreatedAt.UnixNano(), f.UpdatedAt.UnixNano()).
			Scan(&pk); err != nil {
			return err
		}
		if _, err := fts.ExecContext(ctx, pk, ftsText(f.UserID, f.Content), f.UserID); err != nil {
			return err
		}
	}
	return nil
}

// searchSQL ranks with FTS5's bm25 over the caller's own terms (see
// ftsText). The owner is matched three times: by the namespace of every
// term, by the user_id stored in the full-text table, and on the facts row.
// CROSS JOIN keeps the full-text match as the outer loop.
const searchSQL = `SELECT f.id, f.user_id, f.content, COALESCE(f.source_document_id, ''), f.created_at, f.updated_at, -m.rank
FROM (SELECT rowid, rank FROM facts_fts WHERE facts_fts MATCH ? AND user_id = ? ORDER BY rank LIMIT ?) AS m
CROSS JOIN facts AS f ON f.pk = m.rowid
WHERE f.user_id = ?
ORDER BY m.rank, f.id`

// search answers the ranked search of owner's facts (sqlstore.Backend):
// FTS5's bm25, negated, is the score. bm25 uses the caller's own document
// frequencies, so the scores reveal nothing of other users' facts (beyond
// the total number of facts, which bm25 also uses).
func search(owner, text string, limit int) (string, []any, bool) {
	match, ok := ftsQuery(owner, text)
	return searchSQL, []any{match, owner, limit, owner}, ok
}

// ftsWords splits text into runs of letters, digits and private-use
// characters: the characters FTS5's unicode61 tokenizer keeps in a token.
func ftsWords(text string) []string {
	return strings.FieldsFunc(text, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsNumber(r) && !unicode.Is(unicode.Co, r)
	})
}

// ftsNamespace is the prefix of every full-text token of owner: 64 bits of
// SHA-256(owner) written with digits and consonants only, because the
// porter stemmer looks at vowels: "<namespace>meetings" stems like
// "meetings". Two owners sharing a namespace would only share ranking
// statistics: every search also filters on user_id.
func ftsNamespace(owner string) string {
	const alphabet = "0123456789bcdfgh"
	sum := sha256.Sum256([]byte(owner))
	ns := make([]byte, 16)
	for i := range ns {
		ns[i] = alphabet[sum[i/2]>>(4*(1-i%2))&0xf]
	}
	return string(ns)
}

// ftsText is the indexed body of a fact: its words, each prefixed with the
// owner's namespace. The tokenizer then folds case and diacritics and stems
// each token as a whole.
func ftsText(owner, content string) string {
	ns := ftsNamespace(owner)
	var b strings.Builder
	for _, w := range ftsWords(content) {
		b.WriteString(ns)
		b.WriteString(w)
		b.WriteByte(' ')
	}
	return b.String()
}

// ftsQuery turns free text into an FTS5 query that carries no FTS5 syntax
// from the user: each word becomes a double-quoted, namespaced term (a word
// holds no quote), and the terms are ORed. ok is false when the text has no
// word.
func ftsQuery(owner, text string) (match string, ok bool) {
	ns := ftsNamespace(owner)
	seen := make(map[string]bool)
	var terms []string
	for _, w := range ftsWords(text) {
		w = strings.ToLower(w)
		if seen[w] {
			continue
		}
		seen[w] = true
		terms = append(terms, `"`+ns+w+`"`)
		if len(terms) == sqlstore.MaxSearchTerms {
			break
		}
	}
	return strings.Join(terms, " OR "), len(terms) > 0
}
