package incidents

// Helpers of the replays AP-10 to AP-17. Every top-level name starts with
// apb so that it cannot collide with the other half of the suite, which
// lives in the same package.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// ---------------------------------------------------------------------------
// In-memory UDP for synctest replays (AP-10, AP-13).
//
// Real sockets are not "durably blocking" for testing/synctest, so the
// replays whose subject is scheduling or judging run pulse's real Sender
// and real Monitor in a bubble, joined by this network: each path's Write
// is the monitor's UDP ingest done in memory with pulse's own wire package
// (decode, HMAC verify, replay window, signed ACK carrying the monitor's
// directive), its Read returns the ACKs. Loss applies per path and
// direction. The real ingest over real UDP is exercised by the real-time
// halves of the same replays.

// apbLoss is a path's fault model: independent loss each way, plus bursts
// during which every packet both ways is lost. Bursts start as a Poisson
// process (mean gap BurstEvery) and last a uniform [BurstMin, BurstMax].
type apbLoss struct {
	Loss               float64
	BurstEvery         time.Duration
	BurstMin, BurstMax time.Duration
}

// apbPathLoss is one path's draw of an apbLoss.
type apbPathLoss struct {
	m          apbLoss
	r          *mrand.Rand
	start, end time.Time // the current or next burst
}

func (p *apbPathLoss) lost(now time.Time) (lost, burst bool) {
	if p.m.BurstEvery > 0 {
		for p.start.IsZero() || !now.Before(p.end) {
			from := now
			if !p.start.IsZero() {
				from = p.end
			}
			gap := time.Duration(p.r.ExpFloat64() * float64(p.m.BurstEvery))
			p.start = from.Add(gap)
			p.end = p.start.Add(p.m.BurstMin + time.Duration(p.r.Float64()*float64(p.m.BurstMax-p.m.BurstMin)))
		}
		if !now.Before(p.start) {
			return true, true
		}
	}
	return p.m.Loss > 0 && p.r.Float64() < p.m.Loss, false
}

// apbMemNet is the monitor end of the in-memory network.
type apbMemNet struct {
	key  *wire.Key
	sink ingest.Sink                                                  // accepted beats (nil: none)
	dir  func(svc, inst string) wire.Directive                        // rides in every ACK (nil: none)
	seen func(in *apbMemInst, b *wire.Beat, at time.Time, fresh bool) // every beat that arrived (optional; called under mu)
	lost func(in *apbMemInst, b *wire.Beat, burst bool)               // every beat lost on the way in (optional; called under mu)
	loss apbLoss
	// noAcks makes the monitor end answer nothing (the seed's protocol).
	noAcks bool
	// trust skips verifying the beats' HMAC (decoding still checks them):
	// the long replays spend most of their time under -race in SHA-256,
	// and authentication is not their subject (the real-UDP halves run
	// the real ingest, which verifies every beat).
	trust bool

	mu    sync.Mutex
	insts map[string]map[string]*apbMemInst // service → instance
	stats apbMemStats
	obs   [1]ingest.Observation
}

// apbMemInst is one instance as the in-memory ingest knows it: interned
// names (nothing is allocated per beat once it is known) and its replay
// window; Index numbers instances in order of first sight.
type apbMemInst struct {
	Service, Instance string
	Index             int
	w                 wire.Window
}

// inst interns the instance of b (called under mu).
func (n *apbMemNet) inst(b *wire.Beat) *apbMemInst {
	if n.insts == nil {
		n.insts = map[string]map[string]*apbMemInst{}
	}
	byInst := n.insts[string(b.Service)]
	if byInst == nil {
		byInst = map[string]*apbMemInst{}
		n.insts[string(b.Service)] = byInst
	}
	in := byInst[string(b.Instance)]
	if in == nil {
		count := 0
		for _, m := range n.insts {
			count += len(m)
		}
		in = &apbMemInst{Service: string(b.Service), Instance: string(b.Instance), Index: count}
		byInst[in.Instance] = in
	}
	return in
}

type apbMemStats struct {
	Sent, LostUp, LostDown, BurstLost, Accepted, Duplicates, Acks uint64
}

func (n *apbMemNet) Stats() apbMemStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// dialer returns the Sender option that connects to this network over a
// path whose losses are drawn from seed.
func (n *apbMemNet) dialer(seed uint64) heartbeat.Option {
	p := n.path(seed)
	return heartbeat.WithDialer(func(context.Context, string, string) (net.Conn, error) { return p, nil })
}

// path returns a new path whose losses are drawn from seed.
func (n *apbMemNet) path(seed uint64) *apbPath {
	return &apbPath{n: n, in: make(chan []byte, 8), closed: make(chan struct{}),
		loss: apbPathLoss{m: n.loss, r: mrand.New(mrand.NewPCG(seed, seed^0x5eed))}}
}

// apbPath is one sender's socket.
type apbPath struct {
	n      *apbMemNet
	in     chan []byte
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex
	loss   apbPathLoss
}

func (p *apbPath) Write(b []byte) (int, error) {
	now := time.Now()
	p.mu.Lock()
	lostUp, burstUp := p.loss.lost(now)
	lostDown, burstDown := p.loss.lost(now)
	p.mu.Unlock()
	n := p.n
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stats.Sent++
	var beat wire.Beat
	if err := wire.DecodeBeat(b, &beat); err != nil || (!n.trust && !beat.Verify(n.key)) {
		return 0, errors.New("in-memory ingest: a beat that does not decode or verify")
	}
	in := n.inst(&beat)
	if lostUp {
		n.stats.LostUp++
		if burstUp {
			n.stats.BurstLost++
		}
		if n.lost != nil {
			n.lost(in, &beat, burstUp)
		}
		return len(b), nil
	}
	code := wire.AckAccepted
	switch in.w.Check(beat.Epoch, beat.Seq) {
	case wire.Replay:
		return len(b), nil
	case wire.Duplicate:
		n.stats.Duplicates++
		code = wire.AckDuplicate
	case wire.Fresh:
		in.w.Accept(beat.Epoch, beat.Seq)
		n.stats.Accepted++
		if n.sink != nil {
			n.obs[0] = ingest.Observation{Service: in.Service, Instance: in.Instance,
				Source: ingest.Passive, Transport: wire.UDP, Epoch: beat.Epoch, Seq: beat.Seq, SentAt: beat.SentAt,
				ReceivedAt: now, RTT: beat.RTT, Interval: beat.Interval, Status: beat.Status, Reason: beat.Reason,
				Attempt: beat.Attempt}
			n.sink.ObserveBatch(n.obs[:])
		}
	}
	if n.seen != nil {
		n.seen(in, &beat, now, code == wire.AckAccepted)
	}
	if lostDown || n.noAcks {
		if lostDown {
			n.stats.LostDown++
			if burstDown {
				n.stats.BurstLost++
			}
		}
		return len(b), nil
	}
	a := wire.Ack{Code: code, KeyID: beat.KeyID, Epoch: beat.Epoch, Seq: beat.Seq, SentAt: beat.SentAt}
	if n.dir != nil {
		a.Directive = n.dir(in.Service, in.Instance)
	}
	ack, err := wire.AppendAck(nil, &a, n.key, beat.Service, beat.Instance)
	if err != nil {
		return 0, err
	}
	select {
	case p.in <- ack:
		n.stats.Acks++
	default: // the sender is not reading: as a full socket buffer, drop
	}
	return len(b), nil
}

func (p *apbPath) Read(b []byte) (int, error) {
	select {
	case a := <-p.in:
		return copy(b, a), nil
	case <-p.closed:
		return 0, net.ErrClosed
	}
}

func (p *apbPath) Close() error                     { p.once.Do(func() { close(p.closed) }); return nil }
func (p *apbPath) LocalAddr() net.Addr              { return &net.UDPAddr{} }
func (p *apbPath) RemoteAddr() net.Addr             { return &net.UDPAddr{} }
func (p *apbPath) SetDeadline(time.Time) error      { return nil }
func (p *apbPath) SetReadDeadline(time.Time) error  { return nil }
func (p *apbPath) SetWriteDeadline(time.Time) error { return nil }

// apbSeedSender is the seed's sender: a hard-coded ticker started at once
// (no phase, no jitter), one datagram per beat, nothing read back, no
// retransmission; the interval never changes.
func apbSeedSender(ctx context.Context, c net.Conn, key *wire.Key, svc, inst string, interval time.Duration, sent *atomic.Int64) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var seq uint64
	var buf []byte
	svcB, instB := []byte(svc), []byte(inst)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		seq++
		b := wire.Beat{Status: status.Healthy, Epoch: 1, Seq: seq, Interval: interval, Service: svcB, Instance: instB}
		buf, _ = wire.AppendBeat(buf[:0], &b, key)
		c.Write(buf)
		if sent != nil {
			sent.Add(1)
		}
	}
}

// apbEvents collects a monitor's events from a watcher until the monitor
// stops (run it in a goroutine of the monitor's bubble or test).
type apbEvents struct {
	mu  sync.Mutex
	all []monitor.Event
}

func (e *apbEvents) follow(w *monitor.Watcher) {
	var buf []monitor.Event
	for range w.C() {
		for {
			var err error
			buf, err = w.Next(buf[:0], 4096)
			e.mu.Lock()
			e.all = append(e.all, buf...)
			e.mu.Unlock()
			if len(buf) == 0 || err != nil {
				break
			}
		}
	}
}

func (e *apbEvents) list() []monitor.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]monitor.Event(nil), e.all...)
}

// count returns how many instance events went to state to.
func (e *apbEvents) count(to string) int {
	n := 0
	for _, ev := range e.list() {
		if ev.Instance != "" && ev.To == to {
			n++
		}
	}
	return n
}

// ---------------------------------------------------------------------------
// TLS: a throwaway CA (AP-11, AP-12, AP-14, AP-17).

type apbCA struct {
	cert  *x509.Certificate
	key   *ecdsa.PrivateKey
	pool  *x509.CertPool
	pemCA []byte
}

func apbNewCA(t testing.TB) *apbCA {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: apbSerial(t), Subject: pkix.Name{CommonName: "pulse incidents CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &apbCA{cert: c, key: k, pool: pool, pemCA: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// server issues a server certificate for localhost and 127.0.0.1.
func (ca *apbCA) server(t testing.TB) tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: apbSerial(t), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// caFile writes the CA certificate as PEM and returns its path.
func (ca *apbCA) caFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, ca.pemCA, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func apbSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// ---------------------------------------------------------------------------
// Processes (AP-12, AP-15).

type apbRun struct {
	code           int
	stdout, stderr string
}

// apbExec runs a command to completion with a deadline (AP-11 applies to
// tests too) and returns its exit code and output.
func apbExec(t testing.TB, limit time.Duration, bin string, args ...string) apbRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := apbRun{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s %s did not finish within %v", filepath.Base(bin), strings.Join(args, " "), limit)
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run %s: %v", bin, err)
	}
	return r
}

// apbGRPCHealthProbe finds the real grpc-health-probe. Its absence fails
// the replay: agreeing with it is the point of AP-12.
func apbGRPCHealthProbe(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"grpc-health-probe", "grpc_health_probe"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if gp, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(gp))) {
			if p := filepath.Join(dir, "bin", "grpc-health-probe"); apbIsFile(p) {
				return p
			}
		}
	}
	t.Fatal("grpc-health-probe is not on PATH nor in $(go env GOPATH)/bin; install it with\n" +
		"  go install github.com/grpc-ecosystem/grpc-health-probe@v0.4.62\n(.ci/run does)")
	return ""
}

// apbPromtool finds promtool (Debian package prometheus).
func apbPromtool(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not on PATH; install it with: apt-get install -y prometheus (.ci/run does)")
	}
	return p
}

func apbIsFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// apbKeyFile writes the shared UDP key in `pulse beat --key-file` form
// (ID:SECRET, the secret as written in pulse.yaml).
func apbKeyFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "beat.key")
	if err := os.WriteFile(p, []byte("1:"+testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ---------------------------------------------------------------------------
// Logs (AP-14).

// apbLogBuf is a goroutine-safe sink for JSON log lines.
type apbLogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *apbLogBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *apbLogBuf) lines() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// An OTLP/gRPC trace receiver in memory (AP-17): the daemon exports to it
// through its real OTLP exporter, as it would to a collector.

type apbOTLP struct {
	collectortrace.UnimplementedTraceServiceServer
	srv  *grpc.Server
	addr string
	done chan struct{}

	mu    sync.Mutex
	spans []*apbSpan
}

// apbSpan is a received span with the resource's service name.
type apbSpan struct {
	Service string
	*tracepb.Span
}

func apbStartOTLP(t testing.TB) *apbOTLP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &apbOTLP{srv: grpc.NewServer(), addr: ln.Addr().String(), done: make(chan struct{})}
	collectortrace.RegisterTraceServiceServer(o.srv, o)
	go func() { defer close(o.done); o.srv.Serve(ln) }()
	t.Cleanup(o.stop)
	return o
}

func (o *apbOTLP) stop() {
	o.srv.Stop()
	<-o.done
}

func (o *apbOTLP) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		svc := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				svc = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				o.spans = append(o.spans, &apbSpan{Service: svc, Span: sp})
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (o *apbOTLP) received() []*apbSpan {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*apbSpan(nil), o.spans...)
}

func apbSpanDur(s *apbSpan) time.Duration {
	return time.Duration(s.EndTimeUnixNano - s.StartTimeUnixNano)
}

// ---------------------------------------------------------------------------
// Statistics.

// apbBuckets counts arrival times in [from, from+span) by width and returns
// the counts, max/mean and how many fell inside.
func apbBuckets(at []time.Time, from time.Time, span, width time.Duration) ([]int, float64, int) {
	counts := make([]int, span/width)
	total := 0
	for _, a := range at {
		d := a.Sub(from)
		if d < 0 || d >= span {
			continue
		}
		counts[d/width]++
		total++
	}
	peak := 0
	for _, c := range counts {
		peak = max(peak, c)
	}
	if total == 0 {
		return counts, math.Inf(1), 0
	}
	return counts, float64(peak) / (float64(total) / float64(len(counts))), total
}
