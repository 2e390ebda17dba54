package grpconly_test

import (
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/tools/go/analysis/analysistest"

	"github.com/fb4b1dcc/pulse/analysis/grpconly"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestGRPCOnly(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), grpconly.Analyzer, "grpcmain", "bothmain", "withlib", "lib")
}
