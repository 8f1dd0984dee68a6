// Package riverschema is what idflow knows of River's schema, in one
// place: River's own migrations, which both stores apply beside theirs;
// the job states after which a job never runs again (a run whose job is
// in one without the run having ended is stranded); and the statements
// idflow runs on River's river_job table: reading a job's state, and, on
// the embedded database, making the jobs of a dead process available
// again. River owns its tables; idflow reads them, and writes to them only
// through River's client, except for RescueSQL.
package riverschema

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivermigrate"
)

// Migrate applies River's migrations through driver (riversqlite on the
// embedded database, riverpgxv5 on PostgreSQL as the schema owner). River
// applies each of its versions in a transaction of its own.
func Migrate[TTx any](ctx context.Context, driver riverdriver.Driver[TTx], log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: log})
	if err != nil {
		return fmt.Errorf("river migrate: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrate: %w", err)
	}
	return nil
}

// FinishedStates lists, as SQL, the states after which River never runs a
// job again. PostgreSQL's idflow_stranded_runs() (migrations/0004) spells
// the same list.
const FinishedStates = `('completed', 'cancelled', 'discarded')`

// Finished reports whether a job in state will never run again.
func Finished(state string) bool {
	return state == "completed" || state == "cancelled" || state == "discarded"
}

// JobStateSQL reads the state of job $1 as text (an enum on PostgreSQL).
const JobStateSQL = `SELECT CAST(state AS TEXT) FROM river_job WHERE id = $1`

// RescueSQL makes every job left running available again, with one more
// attempt when it was on its last. Only the embedded database runs it, at
// start, when the one process that works its jobs is this one; on
// PostgreSQL, River's own rescuer does this across replicas.
const RescueSQL = `UPDATE river_job SET state = 'available', max_attempts = max(max_attempts, attempt + 1)
	WHERE state = 'running'`
