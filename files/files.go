// Package files keeps document bytes on local disk, one directory per user,
// opened with os.Root so that no name can escape it.
package files

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/idflow/idflow"
)

// Store is a BlobStore under dir.
type Store struct {
	dir string
}

// New returns a Store rooted at dir (created 0700).
func New(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	return &Store{dir: dir}, nil
}

// userRoot opens the directory of p's files. The directory name is a hash of
// the user id, so a user id cannot name a path either.
func (s *Store) userRoot(p idflow.Principal, create bool) (*os.Root, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	dir := s.userDir(owner)
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("files: %w", err)
		}
	}
	r, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, idflow.NotFound("document")
	}
	if err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	return r, nil
}

// validName accepts only the ids idflow mints ([a-z0-9_]).
func validName(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func (s *Store) PutBlob(_ context.Context, p idflow.Principal, id string, data []byte) error {
	if !validName(id) {
		return idflow.Errorf(idflow.EINVALID, "invalid document id")
	}
	r, err := s.userRoot(p, true)
	if err != nil {
		return err
	}
	defer r.Close()
	tmp := id + ".tmp"
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("files: create: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("files: write: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("files: sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("files: close: %w", err)
	}
	if err := r.Rename(tmp, id); err != nil {
		return fmt.Errorf("files: rename: %w", err)
	}
	return nil
}

func (s *Store) GetBlob(_ context.Context, p idflow.Principal, id string) ([]byte, error) {
	if !validName(id) {
		return nil, idflow.NotFound("document")
	}
	r, err := s.userRoot(p, false)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := r.ReadFile(id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, idflow.NotFound("document")
	}
	if err != nil {
		return nil, fmt.Errorf("files: read: %w", err)
	}
	return b, nil
}

func (s *Store) DeleteBlob(_ context.Context, p idflow.Principal, id string) error {
	if !validName(id) {
		return idflow.NotFound("document")
	}
	r, err := s.userRoot(p, false)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.Remove(id); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("files: remove: %w", err)
	}
	return nil
}

// userDir is the directory of owner's files: named by a hash of the user
// id, so a user id cannot name a path either.
func (s *Store) userDir(owner string) string {
	sum := sha256.Sum256([]byte(owner))
	return filepath.Join(s.dir, hex.EncodeToString(sum[:16]))
}

// DeleteBlobs removes p's directory and every file in it.
func (s *Store) DeleteBlobs(_ context.Context, p idflow.Principal) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	if err := os.RemoveAll(s.userDir(owner)); err != nil {
		return fmt.Errorf("files: remove: %w", err)
	}
	return nil
}
