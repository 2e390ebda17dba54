package wire

import "strconv"

// Reason is the small code a beat carries to say why its status is what it
// is. Codes below 1000 are defined here; 1000 and above belong to the
// application.
type Reason uint16

const (
	ReasonNone         Reason = 0
	ReasonStarting     Reason = 1 // still starting up; not ready yet
	ReasonDraining     Reason = 2 // shutting down; leaving the traffic set on purpose
	ReasonDependency   Reason = 3 // a dependency check fails
	ReasonOverloaded   Reason = 4 // shedding load
	ReasonCheckError   Reason = 5 // the local check could not be run (refused, DNS, TLS...)
	ReasonCheckTimeout Reason = 6 // the local check timed out
	ReasonCheckStatus  Reason = 7 // the local check answered with a non-2xx HTTP status
	ReasonCheckBody    Reason = 8 // the local check answered 2xx but its body says down or a non-zero code
	ReasonApp          Reason = 1000
)

var reasonNames = [...]string{
	ReasonNone:         "none",
	ReasonStarting:     "starting",
	ReasonDraining:     "draining",
	ReasonDependency:   "dependency",
	ReasonOverloaded:   "overloaded",
	ReasonCheckError:   "check-error",
	ReasonCheckTimeout: "check-timeout",
	ReasonCheckStatus:  "check-status",
	ReasonCheckBody:    "check-body",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	if r >= ReasonApp {
		return "app-" + strconv.Itoa(int(r-ReasonApp))
	}
	return "reason-" + strconv.Itoa(int(r))
}

// Transport names how a beat travelled.
type Transport uint8

const (
	TransportUnknown Transport = iota
	UDP
	HTTP
	GRPC
)

func (t Transport) String() string {
	switch t {
	case UDP:
		return "udp"
	case HTTP:
		return "http"
	case GRPC:
		return "grpc"
	}
	return "unknown"
}

// ParseTransport parses "udp", "http" or "grpc".
func ParseTransport(s string) (Transport, error) {
	switch s {
	case "udp":
		return UDP, nil
	case "http", "https":
		return HTTP, nil
	case "grpc":
		return GRPC, nil
	}
	return TransportUnknown, &transportError{s}
}

type transportError struct{ s string }

func (e *transportError) Error() string {
	return "wire: unknown transport " + strconv.Quote(e.s) + " (want udp, http or grpc)"
}
