package sqlite

import (
	"context"
	"database/sql"
)

// RescueInterruptedJobs makes every River job that was running when the
// process died available again, so its run resumes at once instead of after
// River's stuck-job timeout. It is only safe because an embedded database
// has exactly one process (cmd/idflow holds a lock on the data dir); on
// PostgreSQL, River's own rescuer does this job across replicas.
func (db *DB) RescueInterruptedJobs(ctx context.Context) (int64, error) {
	var n int64
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE river_job SET state = 'available',
			max_attempts = max(max_attempts, attempt + 1) WHERE state = 'running'`)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, fail("rescue jobs", err)
}
