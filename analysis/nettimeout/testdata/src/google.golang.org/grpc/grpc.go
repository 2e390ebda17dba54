// Package grpc is a minimal stand-in for google.golang.org/grpc with the
// signatures the analyzer looks at.
package grpc

import (
	"context"
	"time"
)

type DialOption interface{ dial() }
type CallOption interface{ call() }

type ClientConn struct{}

func (cc *ClientConn) Invoke(ctx context.Context, method string, args, reply any, opts ...CallOption) error {
	return nil
}

type ClientStream interface{ RecvMsg(any) error }

func (cc *ClientConn) NewStream(ctx context.Context, method string, opts ...CallOption) (ClientStream, error) {
	return nil, nil
}

func Dial(target string, opts ...DialOption) (*ClientConn, error) { return nil, nil }
func DialContext(ctx context.Context, target string, opts ...DialOption) (*ClientConn, error) {
	return nil, nil
}
func NewClient(target string, opts ...DialOption) (*ClientConn, error) { return nil, nil }
func WithBlock() DialOption                                            { return nil }
func WithTimeout(d time.Duration) DialOption                           { return nil }
