package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Dial returns an etcd client for the CLI (pulse config push).
func Dial(endpoints []string, timeout time.Duration) (*clientv3.Client, error) {
	for _, e := range endpoints {
		if err := CheckEndpoint(e); err != nil {
			return nil, err
		}
	}
	return clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: timeout, Logger: zap.NewNop()})
}

// Push writes a configuration to etcd for every node to apply. The caller
// validates it first (config.Load): the nodes validate it again with their
// own secrets and files, and one that fails there is rejected by each node
// without stopping the configuration it runs. It returns the hash the
// nodes will report.
func Push(ctx context.Context, cli *clientv3.Client, data []byte) (string, error) {
	if _, err := cli.Put(ctx, ConfigKey, string(data)); err != nil {
		return "", fmt.Errorf("writing %s to etcd: %w", ConfigKey, err)
	}
	return hashOf(data), nil
}

// NodeStatus is one live node's answer to a pushed configuration.
type NodeStatus struct {
	Node   string
	Status ConfigStatusRecord
	// Known: the node has reported on this hash (applied or rejected).
	Known bool
}

// Applied reports whether the node runs the hash.
func (s NodeStatus) Applied(hash string) bool { return s.Status.Applied == hash }

// WaitApplied polls until every live member reports the hash applied or
// rejected, or ctx ends; it returns the last answers, by node.
func WaitApplied(ctx context.Context, cli *clientv3.Client, hash string) ([]NodeStatus, error) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		out, err := Statuses(ctx, cli, hash)
		if err != nil {
			return nil, err
		}
		done := len(out) > 0
		for _, s := range out {
			done = done && s.Known
		}
		if done {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return out, nil
		case <-t.C:
		}
	}
}

// Statuses reads every live member's configuration status.
func Statuses(ctx context.Context, cli *clientv3.Client, hash string) ([]NodeStatus, error) {
	ms, err := cli.Get(ctx, MembersKey, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	sts, err := cli.Get(ctx, ConfigStatus, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	byNode := map[string]ConfigStatusRecord{}
	for _, kv := range sts.Kvs {
		var r ConfigStatusRecord
		if json.Unmarshal(kv.Value, &r) == nil {
			byNode[strings.TrimPrefix(string(kv.Key), ConfigStatus)] = r
		}
	}
	var out []NodeStatus
	for _, kv := range ms.Kvs {
		id := strings.TrimPrefix(string(kv.Key), MembersKey)
		r := byNode[id]
		out = append(out, NodeStatus{Node: id, Status: r, Known: r.Applied == hash || r.Rejected == hash})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out, nil
}
