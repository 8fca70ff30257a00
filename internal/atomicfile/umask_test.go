//go:build unix

package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// withUmask runs the test under umask m. The umask is process-wide, so tests
// that use it must not run in parallel.
func withUmask(t *testing.T, m int) {
	t.Helper()
	old := syscall.Umask(m)
	t.Cleanup(func() { syscall.Umask(old) })
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestWriteModeIgnoresUmask(t *testing.T) {
	tests := []struct {
		name  string
		umask int
		perm  os.FileMode
	}{
		{"0600 under umask 000", 0o000, 0o600},
		{"0644 under umask 000", 0o000, 0o644},
		{"0644 under umask 077", 0o077, 0o644},
		{"0600 under umask 022", 0o022, 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			withUmask(t, tt.umask)
			path := filepath.Join(t.TempDir(), "key.pem")
			// Twice: a new file, then a replacement of a file that had a
			// wider mode.
			if err := os.WriteFile(path, []byte("wide"), 0o666); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, 0o666); err != nil {
				t.Fatal(err)
			}
			if err := Write(path, []byte("secret"), tt.perm); err != nil {
				t.Fatal(err)
			}
			if got := mode(t, path); got != tt.perm {
				t.Errorf("mode = %v, want %v", got, tt.perm)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "secret" {
				t.Errorf("content = %q, want %q", got, "secret")
			}
		})
	}
}

func TestEnsureDirMode(t *testing.T) {
	tests := []struct {
		name     string
		umask    int
		existing os.FileMode // 0: the directory does not exist yet
		perm     os.FileMode
	}{
		{"new 0700 under umask 000", 0o000, 0, 0o700},
		{"new 0750 under umask 077", 0o077, 0, 0o750},
		{"existing 0777 narrowed to 0700", 0o000, 0o777, 0o700},
		{"existing 0700 kept", 0o000, 0o700, 0o700},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			withUmask(t, tt.umask)
			path := filepath.Join(t.TempDir(), "a", "b")
			if tt.existing != 0 {
				if err := os.MkdirAll(path, tt.existing); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.existing); err != nil {
					t.Fatal(err)
				}
			}
			if err := EnsureDir(path, tt.perm); err != nil {
				t.Fatal(err)
			}
			if got := mode(t, path); got != tt.perm {
				t.Errorf("mode = %v, want %v", got, tt.perm)
			}
		})
	}
}
