package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weft-mesh/weft/internal/atomicfile"
)

// KeyStore keeps one WireGuard private key per segment, generated on this
// host and never leaving it: <Dir>/<segment>.key, mode 0600, in a 0700
// directory, written atomically. Errors name the file, never its content.
type KeyStore struct {
	Dir string // e.g. <data_dir>/keys; created 0700
}

// Ensure loads the segment's key, generating and storing one first if
// there is none, and returns its public half.
func (k KeyStore) Ensure(segment string) (wgtypes.Key, error) {
	path, err := k.path(segment)
	if err != nil {
		return wgtypes.Key{}, err
	}
	priv, err := readKey(path)
	if err == nil {
		return priv.PublicKey(), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return wgtypes.Key{}, err
	}
	if err := atomicfile.EnsureDir(k.Dir, 0o700); err != nil {
		return wgtypes.Key{}, fmt.Errorf("overlay: keys: %w", err)
	}
	priv, err = wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("overlay: keys: generate for %q: %w", segment, err)
	}
	if err := atomicfile.Write(path, []byte(priv.String()+"\n"), 0o600); err != nil {
		return wgtypes.Key{}, fmt.Errorf("overlay: keys: %w", err)
	}
	return priv.PublicKey(), nil
}

// Private returns the segment's private key; the error wraps
// os.ErrNotExist when Ensure never ran for it.
func (k KeyStore) Private(segment string) (wgtypes.Key, error) {
	path, err := k.path(segment)
	if err != nil {
		return wgtypes.Key{}, err
	}
	return readKey(path)
}

// Remove deletes the segment's key; a missing key is not an error.
func (k KeyStore) Remove(segment string) error {
	path, err := k.path(segment)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("overlay: keys: %w", err)
	}
	return nil
}

func (k KeyStore) path(segment string) (string, error) {
	if k.Dir == "" {
		return "", errors.New("overlay: keys: no directory")
	}
	if segment == "" || segment == "." || segment == ".." || strings.ContainsAny(segment, "/\\\x00") {
		return "", fmt.Errorf("overlay: keys: bad segment name %q", segment)
	}
	return filepath.Join(k.Dir, segment+".key"), nil
}

// readKey reads a key file. Its errors never quote the file's content, and
// a key file anybody but the owner may read is refused rather than used.
func readKey(path string) (wgtypes.Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("overlay: keys: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return wgtypes.Key{}, fmt.Errorf("overlay: keys: %s: mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("overlay: keys: %w", err)
	}
	key, err := wgtypes.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("overlay: keys: %s: not a WireGuard key", path)
	}
	return key, nil
}
