package memory_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/fb4b1dcc/pulse/store"
	"github.com/fb4b1dcc/pulse/store/memory"
	"github.com/fb4b1dcc/pulse/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
}
