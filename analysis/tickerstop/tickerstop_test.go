package tickerstop_test

import (
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/tools/go/analysis/analysistest"

	"github.com/fb4b1dcc/pulse/analysis/tickerstop"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// One load for both packages; every file with fixes has a .golden.
func TestTickerStop(t *testing.T) {
	analysistest.RunWithSuggestedFixes(t, analysistest.TestData(), tickerstop.Analyzer, "a", "fix")
}
