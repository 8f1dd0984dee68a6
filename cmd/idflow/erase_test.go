package main

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// scanSQLite answers "table.column" for every value in the database file
// that contains needle: every table, River's and the search index's
// included, text and bytes alike.
func scanSQLite(t *testing.T, path, needle string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tables []string
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	quote := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	var found []string
	for _, table := range tables {
		var cols []string
		crows, err := db.Query(`SELECT name FROM pragma_table_info(?)`, table)
		if err != nil {
			t.Fatal(err)
		}
		for crows.Next() {
			var c string
			if err := crows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			cols = append(cols, c)
		}
		crows.Close()
		for _, c := range cols {
			var n int
			q := fmt.Sprintf(`SELECT count(*) FROM %s WHERE instr(CAST(%s AS BLOB), CAST(? AS BLOB)) > 0`, quote(table), quote(c))
			if err := db.QueryRow(q, needle).Scan(&n); err != nil {
				t.Fatalf("scan %s.%s: %v", table, c, err)
			}
			for range n {
				found = append(found, table+"."+c)
			}
		}
	}
	if len(tables) < 10 {
		t.Fatalf("the scan saw only tables %v", tables)
	}
	return found
}

// scanFiles answers the files under root whose path or content contains needle.
func scanFiles(t *testing.T, root, needle string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(path, needle) || strings.Contains(string(b), needle) {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestEraseUser erases alice through the real server and proves nothing
// of hers remains: no table of the database holds her id, her email or her
// text, no document file of hers is left under the file root, her PAT
// stops, bob's data is untouched, and the audit chain verifies with her id
// replaced by its keyed hash. Only an admin of her tenant (or the platform
// admin) may do it; a PAT never.
func TestEraseUser(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	s := startProdIdflow(t, map[string]string{"IDFLOW_DATA_DIR": dataDir})
	aliceID, bobID := s.UserID(t, callerAlice), s.UserID(t, callerBob)
	aliceEmail := "alice@t-one.example"

	var ids []string
	alice := newFixture(t, s, callerAlice, false, &ids)
	bob := newFixture(t, s, callerBob, false, &ids)
	for _, p := range []string{"app_id", "agent_id", "session_id", "workflow_id", "run_id", "document_id", "fact_id", "token_id"} {
		alice.id(p)
		bob.id(p)
	}
	// Text only alice wrote (the fixtures' text is the same for both).
	const aliceText = "ALICE-ERASE-5d2c81"
	s.create(t, callerAlice, "/api/v1/apps", map[string]any{"name": aliceText})
	s.create(t, callerAlice, "/api/v1/facts", map[string]any{"content": "remember " + aliceText})
	s.create(t, callerAlice, "/api/v1/etl/ingest", map[string]any{"filename": "mine.txt", "content": "The file of " + aliceText + "."})
	s.mintPAT(t, "alice-pat", callerAlice, []string{"read"})
	s.mintPAT(t, "admin-pat", callerAdmin, []string{"read", "write"})
	// An admin's read of alice's facts names her in another's event.
	mustStatus(t, s.As(t, callerAdmin, "GET", "/api/v1/users/"+aliceID+"/facts", nil), http.StatusOK)
	bobApps := s.listAll(t, callerBob, "/api/v1/apps")

	dbPath := filepath.Join(dataDir, "idflow.db")
	sum := sha256.Sum256([]byte(aliceID))
	aliceDir := filepath.Join(dataDir, "files", hex.EncodeToString(sum[:16]))
	if _, err := os.Stat(aliceDir); err != nil {
		t.Fatalf("alice's document directory: %v", err)
	}
	for _, needle := range []string{aliceID, aliceEmail, aliceText} {
		if len(scanSQLite(t, dbPath, needle)) == 0 {
			t.Fatalf("before erasure the scan finds no %q", needle)
		}
	}

	erase := "/api/v1/admin/users/" + aliceID
	checkProblem(t, s.As(t, callerBob, "DELETE", erase, nil), http.StatusForbidden)
	checkProblem(t, s.As(t, callerAdmin2, "DELETE", erase, nil), http.StatusNotFound) // another tenant's admin
	checkProblem(t, s.As(t, "admin-pat", "DELETE", erase, nil), http.StatusForbidden)
	checkProblem(t, s.As(t, callerAdmin, "DELETE", "/api/v1/admin/users/"+s.UserID(t, callerAdmin), nil), http.StatusForbidden)
	mustStatus(t, s.As(t, callerAdmin, "DELETE", erase, nil), http.StatusNoContent)

	for _, needle := range []string{aliceID, aliceEmail, aliceText} {
		if where := scanSQLite(t, dbPath, needle); len(where) != 0 {
			t.Errorf("after erasure %q is still in %v", needle, where)
		}
	}
	if _, err := os.Stat(aliceDir); !os.IsNotExist(err) {
		t.Errorf("alice's document directory is still there (%v)", err)
	}
	if where := scanFiles(t, filepath.Join(dataDir, "files"), aliceText); len(where) != 0 {
		t.Errorf("alice's text is still in %v", where)
	}
	checkProblem(t, s.As(t, "alice-pat", "GET", "/api/v1/me", nil), http.StatusUnauthorized)

	// Bob's data is all there; his own erasure later is another matter.
	if after := s.listAll(t, callerBob, "/api/v1/apps"); len(after) != len(bobApps) {
		t.Errorf("bob had %d apps, has %d", len(bobApps), len(after))
	}
	mustStatus(t, s.As(t, callerBob, "GET", "/api/v1/documents/"+bob.id("document_id")+"/content", nil), http.StatusOK)
	if len(scanSQLite(t, dbPath, bobID)) == 0 {
		t.Error("bob's rows are gone")
	}

	// The chain verifies; the erasure is audited under the mark, never the id.
	r := s.As(t, callerRoot, "GET", "/api/v1/admin/audit/verify", nil)
	mustStatus(t, r, http.StatusOK)
	var v struct {
		OK bool `json:"ok"`
	}
	r.JSON(t, &v)
	if !v.OK {
		t.Fatalf("the audit chain does not verify after erasure: %s", r)
	}
	var marks []string
	for _, e := range s.auditEvents(t, callerRoot, "/api/v1/admin/audit") {
		if e.Action == "admin.user.erase" && e.Outcome == "success" {
			marks = append(marks, e.Resource)
		}
	}
	if len(marks) != 1 || !strings.HasPrefix(marks[0], "user/erased:") || strings.Contains(marks[0], aliceID) {
		t.Errorf("erasure events %v; want one, naming the mark", marks)
	}
	if where := scanSQLite(t, dbPath, strings.TrimPrefix(marks[0], "user/")); !slices.Contains(where, "audit_events.user_id") {
		t.Errorf("alice's events do not carry the mark: %v", where)
	}
}
