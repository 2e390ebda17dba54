package a

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
)

type CheckRequest struct{}
type CheckResponse struct{}
type WatchClient interface {
	Recv() (*CheckResponse, error)
}

// HealthClient has the shape of a generated gRPC client.
type HealthClient interface {
	Check(ctx context.Context, in *CheckRequest, opts ...grpc.CallOption) (*CheckResponse, error)
	Watch(ctx context.Context, in *CheckRequest, opts ...grpc.CallOption) (WatchClient, error)
}

// dialTLS is the seed's INC-2022-052 code: a TLS dial with no timeout.
func dialTLS(addr string) (*tls.Conn, error) {
	return tls.Dial("tcp", addr, &tls.Config{}) // want `tls.Dial has no timeout for the connect or the handshake`
}

func dialTCP(addr string) (net.Conn, error) {
	return net.Dial("tcp", addr) // want `net.Dial has no timeout`
}

func dialTCPAddr(raddr *net.TCPAddr) (*net.TCPConn, error) {
	return net.DialTCP("tcp", nil, raddr) // want `net.DialTCP has no timeout`
}

func keepAliveOnly(addr string) (net.Conn, error) {
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	return d.Dial("tcp", addr) // want `Dial on a net.Dialer that has no Timeout`
}

func zeroDialerTLS(addr string) (*tls.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{}, "tcp", addr, nil) // want `tls.DialWithDialer with a net.Dialer that has no Timeout`
}

func backgroundDialContext(addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(context.Background(), "tcp", addr) // want `DialContext with a context that never expires`
}

func httpGet(url string) (*http.Response, error) {
	return http.Get(url) // want `http.Get uses http.DefaultClient, which has no timeout`
}

func defaultClientDo(url string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(req) // want `\(\*http.Client\).Do of a request without a context deadline on a client without Timeout`
}

func literalClient(url string) (*http.Response, error) {
	c := &http.Client{Transport: http.DefaultTransport}
	return c.Get(url) // want `\(\*http.Client\).Get on a client without Timeout`
}

func grpcBlock(addr string) (*grpc.ClientConn, error) {
	return grpc.Dial(addr, grpc.WithBlock()) // want `grpc.Dial with WithBlock and no deadline blocks forever`
}

func grpcCheck(cl HealthClient) error {
	_, err := cl.Check(context.Background(), &CheckRequest{}) // want `gRPC call Check with a context that never expires`
	return err
}

func grpcInvoke(cc *grpc.ClientConn) error {
	ctx := context.TODO()
	return cc.Invoke(ctx, "/grpc.health.v1.Health/Check", nil, nil) // want `gRPC call Invoke with a context that never expires`
}

// --- must not be flagged ---

func dialTimeout(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }

func udp(addr string) (net.Conn, error) { return net.Dial("udp", addr) }

func unixSocket(path string) (net.Conn, error) { return net.Dial("unix", path) }

func dialerWithTimeout(addr string) (net.Conn, error) {
	return (&net.Dialer{Timeout: time.Second}).Dial("tcp", addr)
}

// pulse's prober idiom: a dialer with Timeout and keepalive, and a context
// deadline per attempt.
func prober(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: time.Second}}
	return d.DialContext(ctx, "tcp", addr)
}

func callerContext(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

func dialerSetLater(addr string, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{}
	d.Timeout = timeout
	return d.Dial("tcp", addr)
}

func tlsWithDialer(addr string, cfg *tls.Config) (*tls.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
}

func clientWithTimeout(url string) (*http.Response, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	return c.Get(url)
}

func clientTimeoutSetLater(url string, d time.Duration) (*http.Response, error) {
	c := &http.Client{}
	c.Timeout = d
	return c.Get(url)
}

// unknownClient: its configuration is not visible here.
func unknownClient(c *http.Client, url string) (*http.Response, error) { return c.Get(url) }

func requestWithDeadline(ctx context.Context, url string) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(req)
}

func grpcNewClient(addr string) (*grpc.ClientConn, error) { return grpc.NewClient(addr) }

func grpcBlockWithTimeout(addr string) (*grpc.ClientConn, error) {
	return grpc.Dial(addr, grpc.WithBlock(), grpc.WithTimeout(time.Second))
}

func grpcBlockContext(ctx context.Context, addr string) (*grpc.ClientConn, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return grpc.DialContext(ctx, addr, grpc.WithBlock())
}

func grpcCheckDeadline(ctx context.Context, cl HealthClient) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := cl.Check(ctx, &CheckRequest{})
	return err
}

// A Watch stream is long-lived by design.
func grpcWatch(cl HealthClient) (WatchClient, error) {
	return cl.Watch(context.Background(), &CheckRequest{})
}

// direct is a pass-through dialer (x/net/proxy.Direct has this shape).
type direct struct{}

func (direct) Dial(network, addr string) (net.Conn, error) { return net.Dial(network, addr) }

func ignored(addr string) (net.Conn, error) {
	return net.Dial("tcp", addr) //pulselint:ignore nettimeout loopback-only admin socket, covered by the caller's deadline
}
