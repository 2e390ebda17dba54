package toxi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Stream says which direction of a connection a toxic acts on.
type Stream string

const (
	Downstream Stream = "downstream" // upstream → client (responses)
	Upstream   Stream = "upstream"   // client → upstream (requests)
)

// Proxy is one embedded toxiproxy proxy listening on loopback.
type Proxy struct {
	p         *toxiproxy.Proxy
	closeOnce sync.Once
}

// New starts a proxy on 127.0.0.1 (an ephemeral port) forwarding to
// upstream ("host:port").
func New(upstream string) (*Proxy, error) {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "pulse-test", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("toxi: start proxy to %s: %w", upstream, err)
	}
	return &Proxy{p: p}, nil
}

// Addr is the address clients dial instead of the upstream.
func (x *Proxy) Addr() string { return x.p.Listen }

// Add installs a toxic. attrs are the toxic's attributes as documented by
// toxiproxy (e.g. {"latency": 300, "jitter": 50} for "latency",
// {"timeout": 0} for a blackhole "timeout"). toxicity is the share of
// connections affected (1 = all).
func (x *Proxy) Add(name, typ string, stream Stream, toxicity float32, attrs map[string]any) error {
	body, err := json.Marshal(map[string]any{
		"name": name, "type": typ, "stream": string(stream),
		"toxicity": toxicity, "attributes": attrs,
	})
	if err != nil {
		return err
	}
	if _, err := x.p.Toxics.AddToxicJson(strings.NewReader(string(body))); err != nil {
		return fmt.Errorf("toxi: add %s toxic %q: %w", typ, name, err)
	}
	return nil
}

// Latency delays every chunk in stream by ms ± jitterMS milliseconds.
func (x *Proxy) Latency(stream Stream, ms, jitterMS int) error {
	return x.Add("latency_"+string(stream), "latency", stream, 1, map[string]any{"latency": ms, "jitter": jitterMS})
}

// Blackhole silently drops all data in both directions on existing and new
// connections, without closing them: a half-open peer.
func (x *Proxy) Blackhole() error {
	if err := x.Add("blackhole_up", "timeout", Upstream, 1, map[string]any{"timeout": 0}); err != nil {
		return err
	}
	return x.Add("blackhole_down", "timeout", Downstream, 1, map[string]any{"timeout": 0})
}

// ResetPeer makes connections close with RST after ms milliseconds.
func (x *Proxy) ResetPeer(ms int) error {
	return x.Add("reset_peer", "reset_peer", Downstream, 1, map[string]any{"timeout": ms})
}

// Remove deletes a toxic by name.
func (x *Proxy) Remove(name string) error {
	return x.p.Toxics.RemoveToxic(context.Background(), name)
}

// Clear removes every toxic.
func (x *Proxy) Clear() { x.p.Toxics.ResetToxics(context.Background()) }

// Close stops the proxy and closes every proxied connection. It is
// idempotent.
func (x *Proxy) Close() { x.closeOnce.Do(x.p.Stop) }
