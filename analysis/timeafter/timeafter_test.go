package timeafter_test

import (
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/tools/go/analysis/analysistest"

	"github.com/fb4b1dcc/pulse/analysis/timeafter"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The testdata modules differ only in their go line, which decides between
// the leak (below 1.23) and the per-iteration allocation message.
func TestBelowGo123(t *testing.T) {
	analysistest.Run(t, filepath.Join(analysistest.TestData(), "go121"), timeafter.Analyzer, "./...")
}

func TestGo123AndLater(t *testing.T) {
	analysistest.Run(t, filepath.Join(analysistest.TestData(), "go123"), timeafter.Analyzer, "./...")
}
