package sqlstore

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Migrations are a backend's own versioned schema migrations: the files
// migrations/NNNN_name.sql of FS, applied in version order, each recorded
// in Table (version, name, applied_at), which Create makes when it is
// missing. (River's tables are River's: riverschema.Migrate.)
type Migrations struct {
	FS     fs.FS
	Table  string
	Create string
}

// Apply applies, in tx, the migrations that Table does not list yet, and
// records each. A file whose name does not start with a version number is
// an error.
func (m Migrations) Apply(ctx context.Context, tx Tx, log *slog.Logger) error {
	names, err := fs.Glob(m.FS, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	sort.Strings(names)
	if _, err := tx.Exec(ctx, m.Create); err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	for _, name := range names {
		base := path.Base(name)
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with a version number", base)
		}
		var applied bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+m.Table+` WHERE version = $1)`, version).Scan(&applied); err != nil {
			return fmt.Errorf("migrations: %w", err)
		}
		if applied {
			continue
		}
		body, err := fs.ReadFile(m.FS, name)
		if err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
		if _, err := tx.Exec(ctx, string(body)); err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+m.Table+` (version, name, applied_at) VALUES ($1, $2, $3)`,
			version, base, time.Now().UTC()); err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
		if log != nil {
			log.InfoContext(ctx, "schema migration applied", "version", version, "name", base)
		}
	}
	return nil
}
