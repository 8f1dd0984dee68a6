package idflow

import (
	"context"
	"time"
)

// App is a user's application: it groups chat sessions and documents
// (their AppID).
type App struct {
	ID          string    `json:"id"`
	UserID      string    `json:"user_id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// MaxDescriptionLen bounds an app's description, in characters.
const MaxDescriptionLen = 4000

// Validate trims the app's text fields and checks them (CheckText): a name
// is required, a description is optional.
func (a *App) Validate() error {
	var err error
	if a.Name, err = CheckText("name", a.Name, MaxNameLen, true); err != nil {
		return err
	}
	a.Description, err = CheckText("description", a.Description, MaxDescriptionLen, false)
	return err
}

// AppPatch changes the fields that are set.
type AppPatch struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
}

// Validate checks the fields that are set as App.Validate does; a name
// cannot be set empty.
func (p *AppPatch) Validate() error {
	var err error
	if p.Name, err = checkPatchText("name", p.Name, MaxNameLen, true); err != nil {
		return err
	}
	p.Description, err = checkPatchText("description", p.Description, MaxDescriptionLen, false)
	return err
}

// AppStore keeps apps.
type AppStore interface {
	CreateApp(ctx context.Context, p Principal, a App) (App, error)
	GetApp(ctx context.Context, p Principal, id string) (App, error)
	ListApps(ctx context.Context, p Principal, page Page) (List[App], error)
	UpdateApp(ctx context.Context, p Principal, id string, patch AppPatch) (App, error)
	DeleteApp(ctx context.Context, p Principal, id string) error
}
