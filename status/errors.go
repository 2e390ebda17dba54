package status

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// ErrorClass groups failures so logs, metrics and alerts can count them
// without parsing messages. The set is small on purpose: a label with a
// handful of values.
type ErrorClass string

const (
	ClassNone      ErrorClass = ""
	ClassTimeout   ErrorClass = "timeout"   // a deadline passed
	ClassRefused   ErrorClass = "refused"   // connection refused or reset
	ClassTLS       ErrorClass = "tls"       // handshake or certificate failure
	ClassDNS       ErrorClass = "dns"       // name resolution failed
	ClassCondition ErrorClass = "condition" // answered, but a condition failed
	ClassProtocol  ErrorClass = "protocol"  // answered something we cannot parse or accept
	ClassInternal  ErrorClass = "internal"  // a bug or panic on our side
	ClassOther     ErrorClass = "other"
)

// Classes lists every non-empty class, for pre-creating metric series.
func Classes() []ErrorClass {
	return []ErrorClass{ClassTimeout, ClassRefused, ClassTLS, ClassDNS, ClassCondition, ClassProtocol, ClassInternal, ClassOther}
}

// Error is an error with a class. Wrap with Errorf or WithClass.
type Error struct {
	Class ErrorClass
	Err   error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// WithClass attaches class to err. A nil err stays nil.
func WithClass(class ErrorClass, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Class: class, Err: err}
}

// Errorf formats an error (with %w support) and attaches class.
func Errorf(class ErrorClass, format string, args ...any) error {
	return &Error{Class: class, Err: fmt.Errorf(format, args...)}
}

// Classify returns the class of err: an explicit class set with WithClass or
// Errorf wins; otherwise the class is inferred from well-known standard
// library error types.
func Classify(err error) ErrorClass {
	if err == nil {
		return ClassNone
	}
	var ce *Error
	if errors.As(err, &ce) && ce.Class != ClassNone {
		return ce.Class
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsTimeout {
			return ClassTimeout
		}
		return ClassDNS
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return ClassTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ClassTimeout
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, syscall.EPIPE) {
		return ClassRefused
	}
	var (
		recErr   tls.RecordHeaderError
		alertErr tls.AlertError
		certErr  *tls.CertificateVerificationError
		unkAuth  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	if errors.As(err, &recErr) || errors.As(err, &alertErr) || errors.As(err, &certErr) ||
		errors.As(err, &unkAuth) || errors.As(err, &hostErr) || errors.As(err, &invalid) {
		return ClassTLS
	}
	return ClassOther
}
