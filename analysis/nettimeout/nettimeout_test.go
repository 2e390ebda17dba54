package nettimeout_test

import (
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/tools/go/analysis/analysistest"

	"github.com/fb4b1dcc/pulse/analysis/nettimeout"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// One load for all packages keeps the test fast: type-checking net/http
// from source dominates its time. Every file with fixes has a .golden.
func TestNetTimeout(t *testing.T) {
	analysistest.RunWithSuggestedFixes(t, analysistest.TestData(), nettimeout.Analyzer, "a", "fix", "fixnet")
}
