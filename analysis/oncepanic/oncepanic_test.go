package oncepanic_test

import (
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/tools/go/analysis/analysistest"

	"github.com/fb4b1dcc/pulse/analysis/oncepanic"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestOncePanic(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), oncepanic.Analyzer, "a")
}
