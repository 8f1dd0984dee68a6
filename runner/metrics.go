package runner

// Executing reports how many runs this process is executing now (for the
// idflow_runs_executing gauge).
func (e *Executor) Executing() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.running)
}
