package heartbeat_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/wire"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "tok-0123456789abcdef"

func testKey(t testing.TB) *wire.Key {
	t.Helper()
	k, err := wire.NewKey(1, bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sink collects observations.
type sink struct {
	mu  sync.Mutex
	obs []ingest.Observation
	ch  chan struct{}
}

func newSink() *sink { return &sink{ch: make(chan struct{}, 1)} }

func (s *sink) ObserveBatch(obs []ingest.Observation) {
	s.mu.Lock()
	s.obs = append(s.obs, obs...)
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

func (s *sink) all() []ingest.Observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ingest.Observation(nil), s.obs...)
}

func (s *sink) waitFor(t *testing.T, d time.Duration, cond func([]ingest.Observation) bool) []ingest.Observation {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		if o := s.all(); cond(o) {
			return o
		}
		select {
		case <-s.ch:
		case <-deadline.C:
			o := s.all()
			t.Fatalf("condition not met within %v (%d observations)", d, len(o))
			return o
		}
	}
}

// monitor is a running ingest.Receiver on loopback.
type monitor struct {
	r    *ingest.Receiver
	sink *sink
	udp  string
	http string // base URL
	grpc string
	stop func()
}

type monitorOpts struct {
	udp, http, grpc bool
	tls             *tls.Config
	directives      func(svc, inst string) wire.Directive
	readers         int
	opts            []ingest.Option
}

func startMonitor(t testing.TB, k *wire.Key, mo monitorOpts) *monitor {
	t.Helper()
	ring, _ := wire.NewKeyring(map[string][]*wire.Key{"api": {k}})
	s := newSink()
	cfg := ingest.Config{Keys: ring, Tokens: map[string][]string{"api": {token}}, Sink: s, Directives: mo.directives, Readers: mo.readers}
	m := &monitor{sink: s}
	if mo.udp {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		cfg.UDPConn = c
		m.udp = c.LocalAddr().String()
	}
	if mo.http {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.HTTPListener = ln
		scheme := "http://"
		if mo.tls != nil {
			scheme = "https://"
		}
		m.http = scheme + ln.Addr().String()
	}
	if mo.grpc {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.GRPCListener = ln
		m.grpc = ln.Addr().String()
	}
	cfg.TLS = mo.tls
	r, err := ingest.New(cfg, mo.opts...)
	if err != nil {
		t.Fatal(err)
	}
	m.r = r
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-r.Ready()
	var once sync.Once
	m.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("receiver: %v", err)
			}
		})
	}
	t.Cleanup(m.stop)
	return m
}

// run starts s and returns a stop func that waits for Run to return.
func run(t testing.TB, s *heartbeat.Sender) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("sender Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// results collects Results from OnResult.
type results struct {
	mu sync.Mutex
	rs []heartbeat.Result
	ch chan struct{}
}

func newResults() *results { return &results{ch: make(chan struct{}, 1)} }

func (r *results) add(res heartbeat.Result) {
	r.mu.Lock()
	r.rs = append(r.rs, res)
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

func (r *results) all() []heartbeat.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]heartbeat.Result(nil), r.rs...)
}

func (r *results) waitN(t *testing.T, n int, d time.Duration) []heartbeat.Result {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		if rs := r.all(); len(rs) >= n {
			return rs
		}
		select {
		case <-r.ch:
		case <-deadline.C:
			t.Fatalf("waited %v for %d results, have %d", d, n, len(r.all()))
		}
	}
}

// testCA issues certificates for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pulse test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &testCA{cert: c, key: k, pool: pool}
}

func (ca *testCA) issue(t *testing.T, cn string) *tls.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}
