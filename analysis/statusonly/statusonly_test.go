package statusonly_test

import (
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/tools/go/analysis/analysistest"

	"github.com/fb4b1dcc/pulse/analysis/statusonly"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStatusOnly(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), statusonly.Analyzer, "a")
}
