package a

import (
	"context"
	"net/http"
	"time"

	"example.com/healthhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const proxyHealthPath = "/proxy/health"

// checkEtcd reads a key on every probe (etcd's grpc proxy does this).
func checkEtcd(ctx context.Context, c *clientv3.Client) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := c.Get(ctx, "health")
	return err
}

func registerProxy(mux *http.ServeMux, c *clientv3.Client) {
	mux.Handle(proxyHealthPath, healthhttp.NewHandler(func(ctx context.Context) error { // want `health handler for "/proxy/health" calls blocking I/O \(go.etcd.io/etcd/client/v3.KV\).Get via checkEtcd`
		return checkEtcd(ctx, c)
	}))
}
