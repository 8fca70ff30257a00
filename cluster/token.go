package cluster

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// A join token is "weft1.<ca fingerprint>.<id>.<secret>": the fingerprint
// lets the joining host verify the server before it sends anything; the
// id names the stored token; the secret is checked against its stored
// sha256 and never stored itself.
const tokenPrefix = "weft1"

// ErrTokenFormat says a string is not a join token at all.
var ErrTokenFormat = errors.New("malformed join token (want weft1.<fingerprint>.<id>.<secret>)")

// JoinToken is a parsed join token.
type JoinToken struct {
	CAFingerprint string
	ID            string
	Secret        string
}

// String returns the token in its printable form. It is a secret.
func (t JoinToken) String() string {
	return strings.Join([]string{tokenPrefix, t.CAFingerprint, t.ID, t.Secret}, ".")
}

// SecretHash is what the cluster stores and compares.
func (t JoinToken) SecretHash() string { return hashSecret(t.Secret) }

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ParseToken parses a join token. Its error never contains the token.
func ParseToken(s string) (JoinToken, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 || parts[0] != tokenPrefix {
		return JoinToken{}, ErrTokenFormat
	}
	t := JoinToken{CAFingerprint: parts[1], ID: parts[2], Secret: parts[3]}
	if len(t.CAFingerprint) != 64 || !isHex(t.CAFingerprint) || len(t.ID) != 16 || !isHex(t.ID) || len(t.Secret) < 32 {
		return JoinToken{}, ErrTokenFormat
	}
	return t, nil
}

// newToken returns a fresh token for the CA with the given fingerprint.
func newToken(caFingerprint string) (JoinToken, error) {
	id := make([]byte, 8)
	secret := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return JoinToken{}, fmt.Errorf("cluster: token: %w", err)
	}
	if _, err := rand.Read(secret); err != nil {
		return JoinToken{}, fmt.Errorf("cluster: token: %w", err)
	}
	return JoinToken{
		CAFingerprint: caFingerprint,
		ID:            hex.EncodeToString(id),
		Secret:        base64.RawURLEncoding.EncodeToString(secret),
	}, nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}
