//go:build !unix

package sqlite

import (
	"fmt"
	"os"
)

// lockFile only creates the lock file where flock is not available: two
// processes on one database are not detected there.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open lock file: %w", err)
	}
	return f, nil
}
