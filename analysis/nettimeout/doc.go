// Package nettimeout defines an analyzer for AP-11 (INC-2022-052,
// INC-2023-281: a TLS dial with no Dialer.Timeout blocked the heartbeat
// goroutine and starved netpoll): network operations that have no deadline.
//
// It reports
//
//   - net.Dial (TCP; not udp/unix/ip networks) and net.DialTCP, which wait
//     for the kernel's connect timeout, minutes against a host that drops
//     SYNs; fix: net.DialTimeout;
//   - tls.Dial, which has no timeout for the connect or the handshake; a
//     peer that accepts TCP and never speaks TLS blocks forever; fix:
//     tls.DialWithDialer(&net.Dialer{Timeout: ...}, ...);
//   - Dial on a net.Dialer (or tls.DialWithDialer with one) whose literal
//     sets neither Timeout nor Deadline, and DialContext on such a dialer
//     with context.Background/TODO; fix: add Timeout to the literal;
//   - http.Get/Head/Post/PostForm (http.DefaultClient has no timeout), and
//     requests through http.DefaultClient or a local http.Client literal
//     without Timeout, when the request carries no context deadline; fix:
//     add Timeout to the literal;
//   - grpc.Dial/DialContext with WithBlock and no deadline, and unary gRPC
//     calls (generated client methods, ClientConn.Invoke) made with
//     context.Background/TODO.
//
// A Dial-like wrapper that forwards its own network and address
// parameters to net.Dial or tls.Dial (proxy.Direct, dns.Dial) is not
// reported: it promises net.Dial's behaviour and its callers chose it.
// A client or dialer whose configuration the analyzer cannot see (a
// parameter, a struct field) is assumed to be configured: the analyzer
// reports what it can prove, not what it suspects.
//
// The suggested fixes use a 10 s timeout as a safe floor; tune it (or
// derive it from measured RTT, see AP-01).
package nettimeout
