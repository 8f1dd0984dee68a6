package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/vault"
)

// fakeConnector records whom it starts a flow for.
type fakeConnector struct {
	users []string
	err   error
}

func (f *fakeConnector) Connect(_ context.Context, p idflow.Principal, provider string) (string, error) {
	f.users = append(f.users, p.UserID+"/"+provider)
	if f.err != nil {
		return "", f.err
	}
	return "https://provider.example/authorize?state=for-" + p.UserID, nil
}

// callWithCaps is a tools/call whose client declared caps (in the
// request's _meta, where the SDK also looks for them).
func callWithCaps(caps map[string]any) *sdk.CallToolRequest {
	params := &sdk.CallToolParamsRaw{Name: "downstream_get"}
	if caps != nil {
		params.Meta = sdk.Meta{sdk.MetaKeyClientCapabilities: caps}
	}
	return &sdk.CallToolRequest{Params: params}
}

// TestConnectURL: the elicitation is answered only for a connection error,
// only to a client that declared URL elicitation, only when the flow
// started (for the caller); otherwise nil, and the caller answers the tool
// error.
func TestConnectURL(t *testing.T) {
	alice := authtest.User("alice", "t-one")
	urlCaps := map[string]any{"elicitation": map[string]any{"url": map[string]any{}}}
	formCaps := map[string]any{"elicitation": map[string]any{"form": map[string]any{}}}
	notConnected := idflow.WrapError(idflow.ECONFLICT, "connect gh", &vault.ConnectError{Provider: "gh", Err: vault.ErrNotConnected})
	needsConsent := idflow.WrapError(idflow.ECONFLICT, "reconnect gh", &vault.ConnectError{Provider: "gh", Err: vault.ErrNeedsConsent})
	ctx := context.Background()

	for name, c := range map[string]struct {
		caps  map[string]any
		cause error
		err   error
	}{
		"not a connection error": {urlCaps, idflow.Errorf(idflow.ECONFLICT, "another conflict"), nil},
		"no capabilities":        {nil, notConnected, nil},
		"form elicitation only":  {formCaps, notConnected, nil},
		"the flow fails":         {urlCaps, notConnected, errors.New("database down")},
	} {
		conn := &fakeConnector{err: c.err}
		s := &Server{connect: conn, log: slog.New(slog.DiscardHandler)}
		if got := s.connectURL(ctx, callWithCaps(c.caps), alice, "downstream_get", c.cause); got != nil {
			t.Errorf("%s: %v; want no elicitation", name, got)
		}
		if started := len(conn.users) > 0; started != (c.err != nil) {
			t.Errorf("%s: flows started %v", name, conn.users)
		}
	}
	if got := (&Server{log: slog.New(slog.DiscardHandler)}).connectURL(ctx, callWithCaps(urlCaps), alice, "x", notConnected); got != nil {
		t.Errorf("without a connector: %v", got)
	}

	for cause, verb := range map[error]string{notConnected: "Connect gh", needsConsent: "Reconnect gh"} {
		conn := &fakeConnector{}
		s := &Server{connect: conn, log: slog.New(slog.DiscardHandler)}
		err := s.connectURL(ctx, callWithCaps(urlCaps), alice, "downstream_get", cause)
		var rpc *jsonrpc.Error
		if !errors.As(err, &rpc) || rpc.Code != sdk.CodeURLElicitationRequired {
			t.Fatalf("%v: %v; want the URL elicitation error", cause, err)
		}
		var data struct{ Elicitations []sdk.ElicitParams }
		if err := json.Unmarshal(rpc.Data, &data); err != nil || len(data.Elicitations) != 1 {
			t.Fatalf("data %s: %v", rpc.Data, err)
		}
		e := data.Elicitations[0]
		if e.Mode != "url" || e.URL != "https://provider.example/authorize?state=for-alice" ||
			!strings.HasPrefix(e.ElicitationID, "connect-") || !strings.HasPrefix(e.Message, verb+":") {
			t.Errorf("%v: elicitation %+v", cause, e)
		}
		if len(conn.users) != 1 || conn.users[0] != "alice/gh" {
			t.Errorf("flows started for %v; want alice's for gh", conn.users)
		}
	}
}
