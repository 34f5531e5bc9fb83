// SPDX-License-Identifier: MIT

package daemon

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// PIDFile is a locked pid file, as Miredo keeps one: created without
// following symbolic links, locked so a second instance fails early with a
// clear message, and removed on Close.
type PIDFile struct {
	path string
	f    *os.File
}

// CreatePIDFile writes the current pid to path and holds a lock on it.
func CreatePIDFile(path string) (*PIDFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("pid file %s is locked: make sure another instance is not already running", path)
		}
		return nil, fmt.Errorf("pid file %s: lock: %w", path, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	return &PIDFile{path: path, f: f}, nil
}

// Close removes the pid file and releases the lock. It is safe on nil.
func (p *PIDFile) Close() error {
	if p == nil || p.f == nil {
		return nil
	}
	err := os.Remove(p.path)
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	p.f = nil
	return err
}
