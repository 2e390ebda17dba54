package a

import (
	"testing"
	"time"
)

// Tests use constant timeouts freely.
func TestHeartbeat(t *testing.T) {
	select {
	case <-time.After(time.Second):
	default:
	}
}
