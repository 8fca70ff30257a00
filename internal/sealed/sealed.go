// Package sealed reads and writes JSON files that carry their own sha256,
// so that a torn, truncated or altered file is detected and never loaded.
// Files are written 0600 by atomic rename. It does no logging.
package sealed

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/weft-mesh/weft/internal/atomicfile"
)

// ErrCorrupt says a file failed its checksum or does not parse.
var ErrCorrupt = errors.New("file is corrupt")

type envelope struct {
	SHA256 string          `json:"sha256"`
	Body   json.RawMessage `json:"body"`
}

// Write stores v as JSON in path with its checksum, 0600, atomically.
func Write(path string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("sealed: %s: %w", path, err)
	}
	sum := sha256.Sum256(body)
	raw, err := json.Marshal(envelope{SHA256: hex.EncodeToString(sum[:]), Body: body})
	if err != nil {
		return fmt.Errorf("sealed: %s: %w", path, err)
	}
	return atomicfile.Write(path, raw, 0o600)
}

// Read loads path into v. It returns (false, nil) when the file does not
// exist and an error wrapping ErrCorrupt when it fails its checksum; v is
// untouched unless the whole file is good.
func Read(path string, v any) (bool, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sealed: %w", err)
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return false, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	sum := sha256.Sum256(env.Body)
	if hex.EncodeToString(sum[:]) != env.SHA256 {
		return false, fmt.Errorf("%w: %s: checksum mismatch", ErrCorrupt, path)
	}
	if err := json.Unmarshal(env.Body, v); err != nil {
		return false, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	return true, nil
}
