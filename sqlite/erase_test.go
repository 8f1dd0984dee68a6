package sqlite

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/riverschema"
	"github.com/idflow/idflow/storetest"
)

// scanDatabase is storetest.Scan over every column of every table of db,
// River's and the full-text index's shadow tables included, text and bytes
// alike.
func scanDatabase(db *DB) storetest.Scan {
	return func(t *testing.T, needle string) []string {
		t.Helper()
		ctx := t.Context()
		rows, err := db.w.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
		if err != nil {
			t.Fatal(err)
		}
		var tables []string
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				t.Fatal(err)
			}
			tables = append(tables, name)
		}
		rows.Close()
		var found []string
		for _, table := range tables {
			q := `"` + strings.ReplaceAll(table, `"`, `""`) + `"`
			cols, err := db.w.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, table)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for cols.Next() {
				var name string
				if err := cols.Scan(&name); err != nil {
					t.Fatal(err)
				}
				names = append(names, name)
			}
			cols.Close()
			for _, col := range names {
				var n int64
				c := `"` + strings.ReplaceAll(col, `"`, `""`) + `"`
				if err := db.w.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE instr(CAST(%s AS BLOB), CAST(? AS BLOB)) > 0`, q, c), needle).Scan(&n); err != nil {
					t.Fatalf("scan %s.%s: %v", table, col, err)
				}
				for range n {
					found = append(found, table+"."+col)
				}
			}
		}
		slices.Sort(found)
		return found
	}
}

func TestErasure(t *testing.T) {
	storetest.RunErasure(t, func(t *testing.T) (idflow.Store, storetest.Scan) {
		db := openTest(t)
		if err := riverschema.Migrate(t.Context(), riversqlite.New(db.SQL()), nil); err != nil {
			t.Fatal(err)
		}
		return db, scanDatabase(db)
	})
}
