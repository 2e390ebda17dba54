package status

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStatusText(t *testing.T) {
	for _, s := range []Status{Unknown, Healthy, Degraded, Unhealthy} {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back Status
		if err := json.Unmarshal(b, &back); err != nil || back != s {
			t.Fatalf("%v round-tripped to %v (%s, %v)", s, back, b, err)
		}
	}
	if _, err := Parse("up"); err == nil {
		t.Fatal("Parse accepted an unknown name")
	}
	if _, err := Status(9).MarshalText(); err == nil {
		t.Fatal("invalid status marshalled")
	}
	if Status(9).String() != "status(9)" {
		t.Fatal(Status(9).String())
	}
}

func TestWorse(t *testing.T) {
	cases := []struct{ a, b, want Status }{
		{Healthy, Healthy, Healthy},
		{Healthy, Unknown, Unknown},
		{Unknown, Degraded, Degraded},
		{Degraded, Unhealthy, Unhealthy},
		{Unhealthy, Healthy, Unhealthy},
	}
	for _, c := range cases {
		if got := c.a.Worse(c.b); got != c.want {
			t.Errorf("%v.Worse(%v) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := c.b.Worse(c.a); got != c.want {
			t.Errorf("%v.Worse(%v) = %v, want %v", c.b, c.a, got, c.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want ErrorClass
	}{
		{nil, ClassNone},
		{Errorf(ClassCondition, "code=%d", 503), ClassCondition},
		{fmt.Errorf("wrapped: %w", WithClass(ClassProtocol, errors.New("bad frame"))), ClassProtocol},
		{context.DeadlineExceeded, ClassTimeout},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), ClassTimeout},
		{&net.OpError{Op: "read", Err: timeoutErr{}}, ClassTimeout},
		{&net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, ClassDNS},
		{&net.DNSError{Err: "timeout", Name: "x", IsTimeout: true}, ClassTimeout},
		{&net.OpError{Op: "dial", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}, ClassRefused},
		{fmt.Errorf("x: %w", syscall.ECONNRESET), ClassRefused},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, ClassTLS},
		{errors.New("something"), ClassOther},
	}
	for _, c := range cases {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	if WithClass(ClassTLS, nil) != nil {
		t.Fatal("WithClass(nil) is not nil")
	}
	if len(Classes()) != 8 {
		t.Fatal("Classes changed: update metric pre-creation")
	}
}
