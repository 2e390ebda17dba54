// Package clientv3 is a minimal stand-in for etcd's client.
package clientv3

import "context"

type GetResponse struct{}

type KV interface {
	Get(ctx context.Context, key string) (*GetResponse, error)
}

type Client struct{ KV }
