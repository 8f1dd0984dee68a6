// Package vault keeps users' downstream credentials: sealed at rest with
// AES-256-GCM under a rotatable keyring, the associated data binding each
// ciphertext to its (user id, provider) row; opened on demand, cached in
// memory per (user, provider), and refreshed — once, however many callers
// wait — before the access token runs out.
package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/idflow/idflow"
)

// KeySize is the size of a vault key: AES-256.
const KeySize = 32

// formatV1 is the first byte of every ciphertext: version 1 is
// nonce (12 bytes) ‖ AES-256-GCM(plaintext) ‖ tag (16 bytes).
const formatV1 = 0x01

const nonceSize = 12

// Causes of a refused Open, for errors.Is; the idflow.Error around them
// says what happened without naming a key or any plaintext.
var (
	// ErrUnknownKey: the ciphertext names a key id the keyring does not hold.
	ErrUnknownKey = errors.New("vault: unknown key id")
	// ErrAuthentication: the ciphertext does not authenticate for this
	// (user id, provider) under its key — tampered, moved to another row,
	// or sealed under a different key that claims the same id.
	ErrAuthentication = errors.New("vault: ciphertext does not authenticate")
)

// Keyring holds the vault keys. The first key seals; every key opens.
type Keyring struct {
	keys []ringKey
	byID map[string]int
}

type ringKey struct {
	id   string
	aead cipher.AEAD
}

// KeyID is the id stored beside a ciphertext: a short, domain-separated
// SHA-256 of the key. It names the key without revealing it.
func KeyID(key []byte) string {
	h := sha256.New()
	h.Write([]byte("idflow vault key id v1\x00"))
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// NewKeyring returns a keyring of raw 32-byte keys; keys[0] seals.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("vault: at least one key is required")
	}
	k := &Keyring{byID: map[string]int{}}
	for i, raw := range keys {
		if len(raw) != KeySize {
			return nil, fmt.Errorf("vault: key %d is %d bytes, want %d", i+1, len(raw), KeySize)
		}
		id := KeyID(raw)
		if _, dup := k.byID[id]; dup {
			return nil, fmt.Errorf("vault: key %d is listed twice", i+1)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("vault: key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("vault: key %d: %w", i+1, err)
		}
		k.byID[id] = len(k.keys)
		k.keys = append(k.keys, ringKey{id: id, aead: aead})
	}
	return k, nil
}

// ParseKeyring reads IDFLOW_VAULT_KEY: standard-base64 32-byte keys,
// comma-separated, the first sealing. Errors name the position of a bad
// key, never its value.
func ParseKeyring(spec string) (*Keyring, error) {
	var keys [][]byte
	for i, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(f)
		if err != nil {
			return nil, fmt.Errorf("vault: key %d is not standard base64", i+1)
		}
		keys = append(keys, raw)
	}
	if len(keys) == 0 {
		return nil, errors.New("vault: no key given")
	}
	return NewKeyring(keys...)
}

// SealingKeyID is the id of the key that seals.
func (k *Keyring) SealingKeyID() string { return k.keys[0].id }

// KeyIDs lists the ids of every key, the sealing one first.
func (k *Keyring) KeyIDs() []string {
	ids := make([]string, len(k.keys))
	for i, rk := range k.keys {
		ids[i] = rk.id
	}
	return ids
}

// associatedData binds a ciphertext to its row and key, length-prefixed so
// that no two (key id, user id, provider) triples encode alike.
func associatedData(keyID, userID, provider string) []byte {
	ad := make([]byte, 0, 16+12+len(keyID)+len(userID)+len(provider))
	ad = append(ad, "idflow-vault-v1"...)
	for _, f := range []string{keyID, userID, provider} {
		ad = binary.BigEndian.AppendUint32(ad, uint32(len(f)))
		ad = append(ad, f...)
	}
	return ad
}

// Seal encrypts plaintext for (userID, provider) under the sealing key,
// with a fresh random 96-bit nonce.
func (k *Keyring) Seal(userID, provider string, plaintext []byte) (keyID string, ciphertext []byte, err error) {
	if userID == "" || provider == "" {
		return "", nil, idflow.Errorf(idflow.EINTERNAL, "vault: a user id and a provider are required to seal")
	}
	rk := k.keys[0]
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(plaintext)+rk.aead.Overhead())
	out[0] = formatV1
	if _, err := rand.Read(out[1 : 1+nonceSize]); err != nil {
		return "", nil, idflow.WrapError(idflow.EINTERNAL, "vault: no randomness", err)
	}
	out = rk.aead.Seal(out, out[1:1+nonceSize], plaintext, associatedData(rk.id, userID, provider))
	return rk.id, out, nil
}

// Open decrypts a ciphertext sealed for (userID, provider) under keyID. It
// refuses a tampered ciphertext, one moved to another user's row or another
// provider, and one whose key the keyring does not hold.
func (k *Keyring) Open(userID, provider, keyID string, ciphertext []byte) ([]byte, error) {
	i, ok := k.byID[keyID]
	if !ok {
		return nil, idflow.WrapError(idflow.EINTERNAL,
			fmt.Sprintf("stored credential was sealed under vault key %q, which IDFLOW_VAULT_KEY no longer lists", keyID), ErrUnknownKey)
	}
	rk := k.keys[i]
	if len(ciphertext) < 1+nonceSize+rk.aead.Overhead() || ciphertext[0] != formatV1 {
		return nil, idflow.WrapError(idflow.EINTERNAL, "stored credential is not a vault ciphertext", ErrAuthentication)
	}
	plain, err := rk.aead.Open(nil, ciphertext[1:1+nonceSize], ciphertext[1+nonceSize:], associatedData(keyID, userID, provider))
	if err != nil {
		return nil, idflow.WrapError(idflow.EINTERNAL,
			"stored credential does not authenticate (tampered, moved to another user or provider, or sealed under another key)", ErrAuthentication)
	}
	return plain, nil
}

// GenerateKey returns a new random key in IDFLOW_VAULT_KEY form.
func GenerateKey() (string, error) {
	var b [KeySize]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("vault: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b[:]), nil
}

// LoadOrCreateKeyFile returns the key kept at path, creating it (mode 0600)
// when missing. It is for dev mode only: production keys come from
// IDFLOW_VAULT_KEY, shared by every replica. A file that others may read is
// refused.
func LoadOrCreateKeyFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, gerr := GenerateKey()
		if gerr != nil {
			return "", gerr
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", fmt.Errorf("vault: key dir: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return LoadOrCreateKeyFile(path) // another process won the race
		}
		if err != nil {
			return "", fmt.Errorf("vault: create key file: %w", err)
		}
		_, werr := f.WriteString(key + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return "", fmt.Errorf("vault: write key file: %w", werr)
		}
		return key, nil
	}
	if err != nil {
		return "", fmt.Errorf("vault: read key file: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("vault: key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("vault: key file %s is readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	key := strings.TrimSpace(string(b))
	if _, err := ParseKeyring(key); err != nil {
		return "", fmt.Errorf("vault: key file %s: %w", path, err)
	}
	return key, nil
}
