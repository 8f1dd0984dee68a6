package idflow

// Page asks for one page of a list, newest first.
type Page struct {
	Limit  int
	Cursor string
}

// Page limits of every list route (docs/ARCHITECTURE.md).
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 200
)

// List is one page of results.
type List[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}
