package sandbox_test

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the airlock binary staticAirlock built (47 MB a run),
// which would otherwise stay in the temporary directory run after run.
func TestMain(m *testing.M) {
	code := m.Run()
	if airlockBin.path != "" {
		os.RemoveAll(filepath.Dir(airlockBin.path))
	}
	os.Exit(code)
}
