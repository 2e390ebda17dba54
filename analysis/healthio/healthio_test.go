package healthio_test

import (
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/tools/go/analysis/analysistest"

	"github.com/fb4b1dcc/pulse/analysis/healthio"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHealthIO(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), healthio.Analyzer, "a")
}
