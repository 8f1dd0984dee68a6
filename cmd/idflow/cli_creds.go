package main

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

// The CLI keeps its tokens in <config dir>/idflow/credentials (or
// $IDFLOW_CONFIG_DIR/credentials), mode 0600, sealed with AES-256-GCM under
// a key in credentials.key beside it (also 0600). The sealing protects
// against casual disclosure — a backup, a synced dotfile, the file shown on
// a shared screen — not against the same OS user, who can read the key too.

const (
	credentialsFile = "credentials"
	credentialsKey  = "credentials.key"
	// credentialsAD binds the ciphertext to its purpose.
	credentialsUser, credentialsPurpose = "idflow-cli", "credentials-v1"
)

// credentials are what `idflow login` stores.
type credentials struct {
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

// configDir is where the CLI keeps its files.
func (c *cli) configDir() (string, error) {
	if d := c.getenv("IDFLOW_CONFIG_DIR"); d != "" {
		return d, nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no config directory (set IDFLOW_CONFIG_DIR): %w", err)
	}
	return filepath.Join(d, "idflow"), nil
}

func (c *cli) keyring(dir string) (*vault.Keyring, error) {
	key, err := vault.LoadOrCreateKeyFile(filepath.Join(dir, credentialsKey))
	if err != nil {
		return nil, err
	}
	return vault.ParseKeyring(key)
}

// saveCredentials seals cr and replaces the credentials file atomically.
func (c *cli) saveCredentials(cr credentials) error {
	dir, err := c.configDir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("config dir: %w", err)
	}
	ring, err := c.keyring(dir)
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
	tmp, err := os.CreateTemp(dir, ".credentials-*")
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
	if err := os.Rename(tmp.Name(), filepath.Join(dir, credentialsFile)); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	return nil
}

var errNotLoggedIn = errors.New("not logged in: run `idflow login`")

// loadCredentials opens the credentials file.
func (c *cli) loadCredentials() (credentials, error) {
	dir, err := c.configDir()
	if err != nil {
		return credentials{}, err
	}
	b, err := os.ReadFile(filepath.Join(dir, credentialsFile))
	if errors.Is(err, os.ErrNotExist) {
		return credentials{}, errNotLoggedIn
	}
	if err != nil {
		return credentials{}, fmt.Errorf("credentials: %w", err)
	}
	var sf sealedFile
	if err := json.Unmarshal(b, &sf); err != nil || sf.V != 1 {
		return credentials{}, errors.New("credentials file is damaged: run `idflow login`")
	}
	ct, err := base64.StdEncoding.DecodeString(sf.Ciphertext)
	if err != nil {
		return credentials{}, errors.New("credentials file is damaged: run `idflow login`")
	}
	ring, err := c.keyring(dir)
	if err != nil {
		return credentials{}, err
	}
	plain, err := ring.Open(credentialsUser, credentialsPurpose, sf.KeyID, ct)
	if err != nil {
		return credentials{}, fmt.Errorf("credentials file does not open with %s (run `idflow login`): %w", credentialsKey, err)
	}
	var cr credentials
	if err := json.Unmarshal(plain, &cr); err != nil || cr.V != 1 {
		return credentials{}, errors.New("credentials file is damaged: run `idflow login`")
	}
	return cr, nil
}

// deleteCredentials removes the credentials file (the key stays).
func (c *cli) deleteCredentials() error {
	dir, err := c.configDir()
	if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, credentialsFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("credentials: %w", err)
	}
	return nil
}
