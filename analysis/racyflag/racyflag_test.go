package racyflag_test

import (
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/tools/go/analysis/analysistest"

	"github.com/fb4b1dcc/pulse/analysis/racyflag"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRacyFlag(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), racyflag.Analyzer, "a")
}
