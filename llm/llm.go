// Package llm holds the chat models: a deterministic built-in echo model
// (the default, which can also call tools), a client for OpenAI-compatible
// APIs on the official openai-go SDK, and Metered, which records the token
// usage of every call per user, day and model (docs/MODELS.md).
package llm

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"

	"github.com/idflow/idflow"
)

// EchoModelName is the built-in model's name.
const EchoModelName = "idflow-echo"

// MinUserKeyLen is the shortest key HashedUser accepts from configuration.
const MinUserKeyLen = 32

// HashedUser is what a model provider sees instead of p's user id (the
// `user` field of OpenAI's API, for abuse monitoring): an HMAC-SHA256 under
// key of p's issuer and user id. It is stable per user, and without the key
// nobody can tell whose it is, or confirm a guess by hashing a known id.
func HashedUser(key []byte, p idflow.Principal) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("idflow llm user\x00" + p.Issuer + "\x00" + p.UserID))
	return "u_" + hex.EncodeToString(m.Sum(nil)[:16])
}
