package fixedinterval_test

import (
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/tools/go/analysis/analysistest"

	"github.com/fb4b1dcc/pulse/analysis/fixedinterval"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFixedInterval(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), fixedinterval.Analyzer, "a")
}
