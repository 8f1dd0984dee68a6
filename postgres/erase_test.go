package postgres

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/storetest"
)

// scanDatabase is storetest.Scan over every column of every table of
// the database at superURL (as the superuser: row-level security does not
// hide a row from it), text and bytes alike.
func scanDatabase(superURL string) storetest.Scan {
	return func(t *testing.T, needle string) []string {
		t.Helper()
		ctx := context.Background()
		conn := connect(t, superURL)
		rows, err := conn.Query(ctx, `SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
			JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
			WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' ORDER BY 1, 2`)
		if err != nil {
			t.Fatal(err)
		}
		type col struct{ table, column, typ string }
		cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (col, error) {
			var c col
			return c, r.Scan(&c.table, &c.column, &c.typ)
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(cols) == 0 {
			t.Fatal("no columns to scan")
		}
		var found []string
		for _, c := range cols {
			expr := fmt.Sprintf("strpos(%s::text, $1) > 0", pgx.Identifier{c.column}.Sanitize())
			if c.typ == "bytea" {
				expr = fmt.Sprintf("position(convert_to($1, 'UTF8') in %s) > 0", pgx.Identifier{c.column}.Sanitize())
			}
			var n int64
			if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", pgx.Identifier{c.table}.Sanitize(), expr), needle).Scan(&n); err != nil {
				t.Fatalf("scan %s.%s: %v", c.table, c.column, err)
			}
			for range n {
				found = append(found, c.table+"."+c.column)
			}
		}
		slices.Sort(found)
		return found
	}
}

func TestErasure(t *testing.T) {
	sv := newServer(t)
	storetest.RunErasure(t, func(t *testing.T) (idflow.Store, storetest.Scan) {
		f := sv.fixture(t)
		return f.s, scanDatabase(withDatabase(t, f.pg.SuperuserURL(), f.name))
	})
}
