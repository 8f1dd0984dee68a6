package verify

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"sort"
	"strings"
)

// The HTML report is one self-contained file (inline CSS, no script, no
// link out) that someone who has never seen idflow can read: what was
// done, the verdict, every failure with its requests and answers, the
// matrix of routes × callers.

//go:embed report.html.tmpl
var reportHTML string

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"lower":      strings.ToLower,
	"add1":       func(i int) int { return i + 1 },
	"statusText": func(code int) string { return fmt.Sprintf("%d %s", code, http.StatusText(code)) },
	"means": func(category string) string {
		for _, c := range categories {
			if c.name == category {
				return c.means
			}
		}
		return ""
	},
	"label": func(r *Report, name string) string {
		for _, c := range r.Callers {
			if c.Name == name {
				return c.Label
			}
		}
		return ""
	},
}).Parse(reportHTML))

// matrixCell is one route × caller of the matrix.
type matrixCell struct {
	Result Result // "" when the caller was not checked on the route
	Text   string
	Title  string
}

type matrixRow struct {
	Category, Target string
	Cells            []matrixCell
}

type htmlView struct {
	*Report
	Totals  CategorySummary
	Failed  []Check
	Columns []string
	Rows    []matrixRow
	Skipped []Check
}

// WriteHTML writes the report as a self-contained HTML page.
func (r *Report) WriteHTML(w io.Writer) error {
	view := htmlView{Report: r, Totals: r.Totals(), Failed: r.Failed()}
	for _, c := range r.Callers {
		view.Columns = append(view.Columns, c.Name)
	}
	index := map[string]int{}
	for _, c := range r.Checks {
		if c.Result == Skip {
			view.Skipped = append(view.Skipped, c)
		}
		key := c.Category + "\x00" + c.Target
		i, ok := index[key]
		if !ok {
			i = len(view.Rows)
			index[key] = i
			view.Rows = append(view.Rows, matrixRow{Category: c.Category, Target: c.Target, Cells: make([]matrixCell, len(view.Columns))})
		}
		for j, name := range view.Columns {
			if name == c.Caller {
				view.Rows[i].Cells[j] = merge(view.Rows[i].Cells[j], c)
			}
		}
	}
	rank := map[string]int{}
	for i, c := range categories {
		rank[c.name] = i
	}
	sort.SliceStable(view.Rows, func(i, j int) bool { return rank[view.Rows[i].Category] < rank[view.Rows[j].Category] })
	return reportTemplate.Execute(w, view)
}

// merge folds a check into a cell: one failure fails it.
func merge(cell matrixCell, c Check) matrixCell {
	text := shortGot(c)
	switch {
	case cell.Result == "":
		return matrixCell{Result: c.Result, Text: text, Title: c.Line()}
	case c.Result == Fail && cell.Result != Fail:
		return matrixCell{Result: Fail, Text: text, Title: c.Line()}
	case c.Result == Pass && cell.Result == Skip:
		return matrixCell{Result: Pass, Text: text, Title: c.Line()}
	}
	cell.Title += "\n" + c.Line()
	return cell
}

// shortGot is what a matrix cell shows: the status, mostly.
func shortGot(c Check) string {
	switch c.Result {
	case Skip:
		return "–"
	}
	var code int
	if _, err := fmt.Sscanf(c.Got, "%d", &code); err == nil && code >= 100 && code < 600 {
		return fmt.Sprint(code)
	}
	if strings.HasPrefix(c.Got, "upgraded (101)") {
		return "101"
	}
	if c.Result == Pass {
		return "ok"
	}
	return "✗"
}
