// Package atomicfile writes files so that a reader, or the host after a crash,
// sees either the old content or the new content of a file, never a torn mix,
// and so that a file or directory gets exactly the permissions asked for,
// whatever the process umask is.
//
// It owns only that: it does not choose paths or permissions (callers do: private
// keys are 0600, their directory 0700), it does not log, and it does not retry.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// beforeRename, when set by a test, runs after the temp file is complete and
// synced and before it replaces the target, so the test can observe both.
var beforeRename func(tmpPath string)

// Write replaces the file at path with data, with mode perm.
//
// The data goes to a new temp file in the same directory (same file system, so
// the rename is atomic), which is chmod-ed to perm (a umask can narrow the mode
// given to open, and a umask of 000 would otherwise leave whatever the create
// mode was), fsync-ed, and renamed over path; then the directory is fsync-ed so
// the rename itself survives a crash. On error the temp file is removed and the
// old file, if any, is left untouched.
func Write(path string, data []byte, perm os.FileMode) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("atomicfile: %s: %w", path, err)
		}
	}()

	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if base == "" {
		return errors.New("no file name")
	}

	// CreateTemp opens with O_CREATE|O_EXCL and a random name, so it never
	// follows or reuses a file somebody else planted.
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()

	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if beforeRename != nil {
		beforeRename(tmp)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// Some file systems (certain FUSE and network ones) refuse fsync on a
	// directory with EINVAL; there is nothing more we can do there, and the
	// rename has already happened, so that is not a failure of Write.
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// EnsureDir creates path and any missing parents, then sets the mode of path
// itself to exactly perm (MkdirAll alone applies the umask, and leaves an
// existing directory's mode as it was). Missing parents are created with perm
// as narrowed by the umask.
func EnsureDir(path string, perm os.FileMode) error {
	if err := os.MkdirAll(path, perm); err != nil {
		return fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	if err := os.Chmod(path, perm); err != nil {
		return fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	return nil
}
