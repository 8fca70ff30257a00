package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// dirNames lists the names in dir, so a test can see a temp file left behind.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteCreatesAndOverwrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cert.pem")

	for _, content := range []string{"first", "second, longer content", ""} {
		if err := Write(path, []byte(content), 0o644); err != nil {
			t.Fatalf("Write(%q): %v", content, err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Errorf("content = %q, want %q", got, content)
		}
	}
	if diff := cmp.Diff([]string{"cert.pem"}, dirNames(t, dir)); diff != "" {
		t.Errorf("directory entries (-want +got):\n%s", diff)
	}
}

func TestWriteOldContentUntilRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.pem")
	if err := Write(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}

	called := false
	beforeRename = func(tmp string) {
		called = true
		if filepath.Dir(tmp) != dir {
			t.Errorf("temp file %s is not in %s", tmp, dir)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("reading target before rename: %v", err)
		}
		if string(got) != "old" {
			t.Errorf("target before rename = %q, want %q", got, "old")
		}
		got, err = os.ReadFile(tmp)
		if err != nil {
			t.Errorf("reading temp file: %v", err)
		}
		if string(got) != "new" {
			t.Errorf("temp file = %q, want %q", got, "new")
		}
	}
	t.Cleanup(func() { beforeRename = nil })

	if err := Write(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !called {
		t.Fatal("beforeRename hook not called")
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "new" {
		t.Errorf("target after rename = %q, want %q", got, "new")
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "regular")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A non-empty directory at the target: the temp file gets created and
	// written, then the rename fails, so this exercises the cleanup. (A
	// read-only directory would not stop root.)
	busy := filepath.Join(dir, "busy")
	if err := os.MkdirAll(filepath.Join(busy, "child"), 0o700); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		path     string
		wantTemp bool // the temp file is complete before the failure
	}{
		{"parent is a regular file", filepath.Join(file, "key.pem"), false},
		{"parent missing", filepath.Join(dir, "missing", "key.pem"), false},
		{"target is a directory", busy, true},
		{"no file name", dir + "/", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := dirNames(t, dir)
			var tmp string
			beforeRename = func(p string) { tmp = p }
			t.Cleanup(func() { beforeRename = nil })
			err := Write(tt.path, []byte("secret"), 0o600)
			if err == nil {
				t.Fatal("Write succeeded, want an error")
			}
			if want := "atomicfile: " + tt.path + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
			if diff := cmp.Diff(before, dirNames(t, dir)); diff != "" {
				t.Errorf("directory changed (-before +after):\n%s", diff)
			}
			if got := tmp != ""; got != tt.wantTemp {
				t.Errorf("temp file written = %v, want %v", got, tt.wantTemp)
			}
		})
	}
	if diff := cmp.Diff([]string{"child"}, dirNames(t, busy)); diff != "" {
		t.Errorf("target directory changed (-want +got):\n%s", diff)
	}
}

func TestEnsureDirNotADirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "regular")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := EnsureDir(file, 0o700); err == nil {
		t.Error("EnsureDir on a regular file succeeded, want an error")
	}
}
