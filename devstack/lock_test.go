package devstack

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestLockDataDir: a second stack on a data dir in use is refused, naming
// the holder, until the first lets it go; a lock file left behind (by a
// killed process) is no obstacle.
func TestLockDataDir(t *testing.T) {
	dir := t.TempDir()
	first, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("first lock: %v", err)
	}
	_, err = lockDataDir(dir)
	if err == nil {
		t.Fatal("a second lock on a data dir in use was taken")
	}
	if want := fmt.Sprintf("in use by another orderflow (pid %d)", os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after the first was released (its file still there): %v", err)
	}
	_ = again.Close()
}
