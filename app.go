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

// AppPatch changes the fields that are set.
type AppPatch struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
}

// AppStore keeps apps.
type AppStore interface {
	CreateApp(ctx context.Context, p Principal, a App) (App, error)
	GetApp(ctx context.Context, p Principal, id string) (App, error)
	ListApps(ctx context.Context, p Principal, page Page) (List[App], error)
	UpdateApp(ctx context.Context, p Principal, id string, patch AppPatch) (App, error)
	DeleteApp(ctx context.Context, p Principal, id string) error
}
