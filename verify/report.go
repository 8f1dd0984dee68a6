package verify

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is the outcome of one check.
type Result string

const (
	Pass Result = "pass"
	Fail Result = "fail"
	Skip Result = "skip" // not run, with the reason in Note
)

// Check is one claim the verifier tested: a route (or socket, tool, agent
// turn) called as one caller.
type Check struct {
	Category string `json:"category"`
	Target   string `json:"target"` // "GET /api/v1/facts/{fact_id}", "WS /ws/execution/{run_id}", "MCP tools/call get_run", …
	Caller   string `json:"caller"`
	Result   Result `json:"result"`
	Expected string `json:"expected,omitempty"`
	Got      string `json:"got,omitempty"`
	// Problems say what went wrong: each thing of A's that leaked, each
	// way the answer differed from a missing object's.
	Problems []string `json:"problems,omitempty"`
	Note     string   `json:"note,omitempty"`
	// Evidence is every request and answer of a failed check, redacted.
	Evidence []Exchange `json:"evidence,omitempty"`
}

// Line is the check in one line, naming the route, the caller and what
// went wrong.
func (c Check) Line() string {
	s := fmt.Sprintf("%s %s as %s: %s", strings.ToUpper(string(c.Result)), c.Target, c.Caller, c.Got)
	if c.Expected != "" && c.Result == Fail {
		s += " (want " + c.Expected + ")"
	}
	if len(c.Problems) > 0 {
		s += " — " + strings.Join(c.Problems, "; ")
	}
	if c.Result == Skip && c.Note != "" {
		s += " — " + c.Note
	}
	return s
}

// CallerInfo is who one caller was.
type CallerInfo struct {
	Name   string `json:"name"`
	Label  string `json:"label"`
	UserID string `json:"user_id,omitempty"`
	Tenant string `json:"tenant,omitempty"`
}

// CategorySummary counts one category's checks.
type CategorySummary struct {
	Category string `json:"category"`
	Checks   int    `json:"checks"`
	Passed   int    `json:"passed"`
	Failed   int    `json:"failed"`
	Skipped  int    `json:"skipped"`
}

// Report is the whole verification.
type Report struct {
	Server   string            `json:"server"`
	Passed   bool              `json:"passed"`
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Marker   string            `json:"marker"` // the word in every test object's name
	Rate     float64           `json:"rate"`   // requests per second, at most
	Requests int               `json:"requests"`
	Callers  []CallerInfo      `json:"callers"`
	Summary  []CategorySummary `json:"summary"`
	Checks   []Check           `json:"checks"`
	Notes    []string          `json:"notes,omitempty"`
}

// categories, in the order reports show them, with what each means.
var categories = []struct{ name, means string }{
	{"controls", "A can create, read, find and list its own objects: the other checks could see a leak if there were one"},
	{"routes", "every route of /openapi.json called as each other caller with A's ids: 404 exactly like a missing id, refusals for bad or missing credentials, nothing of A's in any answer"},
	{"filters", "every list with each filter naming A's object (?app_id=…): the same answer as for an object that does not exist"},
	{"admin", "admin routes: refused to non-admins; a tenant admin sees nothing of another tenant"},
	{"websocket", "a run's event socket opened on A's run: refused before the upgrade, like a missing run"},
	{"mcp", "MCP tools called with A's ids and an argument naming A, and A's MCP session used by others: nothing of A's"},
	{"agent", "agent turns that ask for A's data (tool calls with A's ids, memory searches for A's word): nothing of A's"},
	{"intact", "A's objects are unchanged at the end"},
}

func (v *verifier) add(c Check) {
	c.Got = v.cl.red.String(c.Got)
	for i, p := range c.Problems {
		c.Problems[i] = v.cl.red.String(p)
	}
	c.Note = v.cl.red.String(c.Note)
	if c.Result != Fail {
		c.Evidence = nil // evidence is for failures; passes would swamp the report
	}
	v.rep.Checks = append(v.rep.Checks, c)
}

func (v *verifier) pass(category, target, caller, expected, got string, note ...string) {
	v.add(Check{Category: category, Target: target, Caller: caller, Result: Pass, Expected: expected, Got: got, Note: strings.Join(note, " ")})
}

func (v *verifier) fail(category, target, caller, expected, got string, evidence []Exchange, problems ...string) {
	v.add(Check{Category: category, Target: target, Caller: caller, Result: Fail, Expected: expected, Got: got, Problems: problems, Evidence: evidence})
}

func (v *verifier) skip(category, target, caller, note string) {
	v.add(Check{Category: category, Target: target, Caller: caller, Result: Skip, Got: "not run", Note: note})
}

// verdict records a check from what was found: problems fail it.
func (v *verifier) verdict(category, target string, c *caller, expected, got string, problems []string, evidence []Exchange, note ...string) {
	if len(problems) > 0 {
		v.fail(category, target, c.Name, expected, got, evidence, problems...)
		return
	}
	v.pass(category, target, c.Name, expected, got, note...)
}

func (r *Report) finish(at time.Time, requests int) {
	r.Finished = at
	r.Requests = requests
	r.Summary = nil
	byCat := map[string]*CategorySummary{}
	for _, c := range r.Checks {
		s := byCat[c.Category]
		if s == nil {
			s = &CategorySummary{Category: c.Category}
			byCat[c.Category] = s
		}
		s.Checks++
		switch c.Result {
		case Pass:
			s.Passed++
		case Fail:
			s.Failed++
		case Skip:
			s.Skipped++
		}
	}
	failed := 0
	for _, cat := range categories {
		if s := byCat[cat.name]; s != nil {
			r.Summary = append(r.Summary, *s)
			failed += s.Failed
		}
	}
	r.Passed = failed == 0 && len(r.Checks) > 0
}

// Failed returns the failed checks.
func (r *Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Result == Fail {
			out = append(out, c)
		}
	}
	return out
}

// Totals counts every check.
func (r *Report) Totals() CategorySummary {
	t := CategorySummary{Category: "total"}
	for _, s := range r.Summary {
		t.Checks += s.Checks
		t.Passed += s.Passed
		t.Failed += s.Failed
		t.Skipped += s.Skipped
	}
	return t
}

// WriteJSON writes the report as indented JSON, for CI.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteSummary writes the summary table, then one line per failed check.
func (r *Report) WriteSummary(w io.Writer) error {
	fmt.Fprintf(w, "idflow verify %s — %d checks, %d requests in %s (test objects named %s)\n\n",
		r.Server, len(r.Checks), r.Requests, r.Finished.Sub(r.Started).Round(time.Second), r.Marker)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "category\tchecks\tpassed\tfailed\tskipped\t")
	for _, s := range append(slices.Clone(r.Summary), r.Totals()) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", s.Category, s.Checks, s.Passed, s.Failed, s.Skipped)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	failed := r.Failed()
	if len(failed) > 0 {
		fmt.Fprintf(w, "\n%d failed:\n", len(failed))
		for _, c := range failed {
			fmt.Fprintln(w, "  "+c.Line())
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "\nnote: "+n)
	}
	last := "PASS: no caller reached anything of another user's"
	if !r.Passed {
		last = fmt.Sprintf("FAIL: %d of %d checks failed", len(failed), len(r.Checks))
	}
	_, err := fmt.Fprintln(w, "\n"+last)
	return err
}
