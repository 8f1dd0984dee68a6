package cliauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/idflow/idflow/vault"
)

// The CLI keeps its tokens in a directory (Store.Dir) in CredentialsFile,
// mode 0600, sealed with AES-256-GCM under a key in KeyFile beside it (also
// 0600). The sealing protects against casual disclosure — a backup, a
// synced dotfile, the file shown on a shared screen — not against the same
// OS user, who can read the key too.

const (
	CredentialsFile = "credentials"
	KeyFile         = "credentials.key"
	// credentialsUser and credentialsPurpose, the associated data, bind
	// the ciphertext to its purpose.
	credentialsUser, credentialsPurpose = "idflow-cli", "credentials-v1"
)

// Credentials are what a sign-in stores.
type Credentials struct {
	V                  int       `json:"v"`
	Server             string    `json:"server"` // idflow's base URL
	Issuer             string    `json:"issuer"`
	ClientID           string    `json:"client_id"`
	Resource           string    `json:"resource,omitempty"`
	TokenEndpoint      string    `json:"token_endpoint"`
	RevocationEndpoint string    `json:"revocation_endpoint,omitempty"`
	AccessToken        string    `json:"access_token"`
	RefreshToken       string    `json:"refresh_token,omitempty"`
	Expiry             time.Time `json:"expiry,omitzero"`
	Scope              string    `json:"scope,omitempty"`
}

// sealedFile is the credentials file on disk.
type sealedFile struct {
	V          int    `json:"v"`
	KeyID      string `json:"key_id"`
	Ciphertext string `json:"ciphertext"` // standard base64
}

// Store is the sealed credentials file of one directory.
type Store struct{ Dir string }

// ErrNotLoggedIn: there are no stored credentials.
var ErrNotLoggedIn = errors.New("not logged in: run `idflow login`")

func (s Store) keyring() (*vault.Keyring, error) {
	key, err := vault.LoadOrCreateKeyFile(filepath.Join(s.Dir, KeyFile))
	if err != nil {
		return nil, err
	}
	return vault.ParseKeyring(key)
}

// Save seals cr and replaces the credentials file atomically.
func (s Store) Save(cr Credentials) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("config dir: %w", err)
	}
	ring, err := s.keyring()
	if err != nil {
		return err
	}
	cr.V = 1
	plain, err := json.Marshal(cr)
	if err != nil {
		return err
	}
	keyID, ct, err := ring.Seal(credentialsUser, credentialsPurpose, plain)
	if err != nil {
		return err
	}
	out, err := json.Marshal(sealedFile{V: 1, KeyID: keyID, Ciphertext: base64.StdEncoding.EncodeToString(ct)})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.Dir, ".credentials-*")
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("credentials: %w", err)
	}
	if _, err := tmp.Write(append(out, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("credentials: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(s.Dir, CredentialsFile)); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	return nil
}

// Load opens the credentials file.
func (s Store) Load() (Credentials, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, CredentialsFile))
	if errors.Is(err, os.ErrNotExist) {
		return Credentials{}, ErrNotLoggedIn
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials: %w", err)
	}
	var sf sealedFile
	if err := json.Unmarshal(b, &sf); err != nil || sf.V != 1 {
		return Credentials{}, errors.New("credentials file is damaged: run `idflow login`")
	}
	ct, err := base64.StdEncoding.DecodeString(sf.Ciphertext)
	if err != nil {
		return Credentials{}, errors.New("credentials file is damaged: run `idflow login`")
	}
	ring, err := s.keyring()
	if err != nil {
		return Credentials{}, err
	}
	plain, err := ring.Open(credentialsUser, credentialsPurpose, sf.KeyID, ct)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials file does not open with %s (run `idflow login`): %w", KeyFile, err)
	}
	var cr Credentials
	if err := json.Unmarshal(plain, &cr); err != nil || cr.V != 1 {
		return Credentials{}, errors.New("credentials file is damaged: run `idflow login`")
	}
	return cr, nil
}

// Delete removes the credentials file (the key stays).
func (s Store) Delete() error {
	if err := os.Remove(filepath.Join(s.Dir, CredentialsFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("credentials: %w", err)
	}
	return nil
}
