package devstack

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// lockFile is the data dir's lock, which the running stack holds.
const lockFile = "lock"

// lockDataDir takes the data dir for this process, before any embedded
// component opens its files in it: two stacks on one data dir would have
// two NATS servers writing one JetStream store (PostgreSQL refuses a second
// postmaster itself, but only after NATS has started). The lock is an
// flock(2) on the file "lock", so it goes with the process however the
// process ends, and a lock file left behind by a killed one is no obstacle.
// The file holds the holder's pid, for the message.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			by := "another process"
			if pid, perr := strconv.Atoi(string(bytes.TrimSpace(holder))); perr == nil {
				by = fmt.Sprintf("another orderflow (pid %d)", pid)
			}
			return nil, fmt.Errorf("data dir %s is in use by %s: stop it first, or give this one another ORDERFLOW_DATA_DIR", dir, by)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
