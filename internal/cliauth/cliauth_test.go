package cliauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFresh: a token with time left is used as it is; one about to expire
// is refreshed, the rotated refresh token stored; a failed refresh keeps a
// still-valid token (and says why) but not an expired one; a refused
// refresh token ends the session.
func TestFresh(t *testing.T) {
	var mu sync.Mutex
	var forms []map[string]string
	answer := `{"access_token":"at-2","refresh_token":"rt-2","expires_in":3600}`
	status := http.StatusOK
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		mu.Lock()
		defer mu.Unlock()
		f := map[string]string{}
		for k := range r.PostForm {
			f[k] = r.PostForm.Get(k)
		}
		forms = append(forms, f)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(answer))
	}))
	defer ts.Close()

	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := start
	c := NewClient()
	c.Now = func() time.Time { return now }
	s := Store{Dir: filepath.Join(t.TempDir(), "config")}
	stored := Credentials{Issuer: "https://issuer", ClientID: "cli", Resource: "https://api", TokenEndpoint: ts.URL,
		AccessToken: "at-1", RefreshToken: "rt-1", Expiry: start.Add(time.Hour)}
	if err := s.Save(stored); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	cr, stale, err := c.Fresh(ctx, s)
	if err != nil || stale != nil || cr.AccessToken != "at-1" || len(forms) != 0 {
		t.Fatalf("an hour left: %q, %v, %v, %d refreshes; want the stored token, no refresh", cr.AccessToken, stale, err, len(forms))
	}

	now = start.Add(56 * time.Minute) // 4 minutes left
	cr, stale, err = c.Fresh(ctx, s)
	if err != nil || stale != nil || cr.AccessToken != "at-2" || cr.RefreshToken != "rt-2" || !cr.Expiry.Equal(now.Add(time.Hour)) {
		t.Fatalf("4 minutes left: %+v, %v, %v; want at-2, rt-2, an hour from now", cr, stale, err)
	}
	want := map[string]string{"grant_type": "refresh_token", "refresh_token": "rt-1", "client_id": "cli", "resource": "https://api"}
	if len(forms) != 1 || !equalForms(forms[0], want) {
		t.Fatalf("refresh requests %v; want one %v", forms, want)
	}
	if got, err := s.Load(); err != nil || got.AccessToken != "at-2" || got.RefreshToken != "rt-2" {
		t.Fatalf("stored after the refresh: %+v, %v", got, err)
	}

	// The issuer fails while the token has 4 minutes left: keep it, say why.
	now = cr.Expiry.Add(-4 * time.Minute)
	status, answer = http.StatusServiceUnavailable, `not json`
	cr, stale, err = c.Fresh(ctx, s)
	if err != nil || stale == nil || cr.AccessToken != "at-2" {
		t.Fatalf("issuer down, token valid: %q, stale %v, %v; want at-2 with the reason", cr.AccessToken, stale, err)
	}
	// ... and once it has expired, it is an error.
	now = cr.Expiry.Add(time.Second)
	if _, stale, err = c.Fresh(ctx, s); err == nil || stale != nil {
		t.Fatalf("issuer down, token expired: stale %v, err %v; want an error", stale, err)
	}

	// A refused refresh token ends the session.
	status, answer = http.StatusBadRequest, `{"error":"invalid_grant"}`
	if _, _, err = c.Fresh(ctx, s); err == nil || !strings.Contains(err.Error(), "idflow login") {
		t.Fatalf("invalid_grant: %v; want an error telling to log in", err)
	}

	// Without a refresh token an expired session cannot be renewed.
	stored.RefreshToken, stored.Expiry = "", now.Add(-time.Minute)
	if err := s.Save(stored); err != nil {
		t.Fatal(err)
	}
	n := len(forms)
	if _, _, err = c.Fresh(ctx, s); err == nil || !strings.Contains(err.Error(), "expired") || len(forms) != n {
		t.Fatalf("expired without a refresh token: %v, %d requests; want an error and no request", err, len(forms)-n)
	}
}

func equalForms(a, b map[string]string) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// TestStoreRefusesTamperedFiles: the file holds no token in the clear, a
// changed ciphertext or a foreign key does not open, and Delete leaves
// nobody logged in.
func TestStoreRefusesTamperedFiles(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	if _, err := s.Load(); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("empty dir: %v; want ErrNotLoggedIn", err)
	}
	if err := s.Save(Credentials{AccessToken: "secret-access-token", RefreshToken: "secret-refresh-token"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.Dir, CredentialsFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "secret-") {
		t.Fatal("a token is in the clear")
	}
	var sf sealedFile
	if err := json.Unmarshal(raw, &sf); err != nil {
		t.Fatal(err)
	}
	flipped := sf
	ct, err := base64.StdEncoding.DecodeString(sf.Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	ct[len(ct)/2] ^= 1
	flipped.Ciphertext = base64.StdEncoding.EncodeToString(ct)
	for name, content := range map[string]any{"garbage": "not a sealed file", "flipped": flipped} {
		b, _ := json.Marshal(content)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if cr, err := s.Load(); err == nil || cr.AccessToken != "" {
			t.Fatalf("%s: loaded %+v; want an error", name, cr)
		}
	}
	// Another directory's key does not open this file.
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	other := Store{Dir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(other.Dir, CredentialsFile), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Load(); err == nil {
		t.Fatal("the file opened with another key")
	}
	if cr, err := s.Load(); err != nil || cr.AccessToken != "secret-access-token" {
		t.Fatalf("the original file: %v", err)
	}
	if err := s.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("after Delete: %v; want ErrNotLoggedIn", err)
	}
}
