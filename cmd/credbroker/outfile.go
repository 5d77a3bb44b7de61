package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// outputFile is a file written whole or not at all: it is written as a
// temporary file, mode 0600, in the directory of its final path, and
// renamed there only once complete and synced. Until Commit, the final path
// is untouched; Abort removes the temporary file.
type outputFile struct {
	*os.File
	path string
	done bool
}

func createOutputFile(path string) (*outputFile, error) {
	dir, base := filepath.Split(path)
	if base == "" {
		return nil, fmt.Errorf("--output-file %s: names a directory, not a file", path)
	}
	if dir == "" {
		dir = "." // beside the file, not in $TMPDIR: the rename must not cross filesystems
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("--output-file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil { // CreateTemp's mode already, whatever the umask; said again
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &outputFile{File: f, path: path}, nil
}

// Commit syncs the file and renames it to its final path, replacing what
// was there.
func (o *outputFile) Commit() error {
	if err := o.Sync(); err != nil {
		o.Abort()
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	if err := o.Close(); err != nil {
		o.Abort()
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	if err := os.Rename(o.Name(), o.path); err != nil {
		o.Abort()
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	o.done = true
	// The rename is durable once the directory is synced.
	if d, err := os.Open(filepath.Dir(o.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Abort removes the temporary file; after Commit it does nothing.
func (o *outputFile) Abort() {
	if o.done {
		return
	}
	o.done = true
	o.Close()
	os.Remove(o.Name())
}
