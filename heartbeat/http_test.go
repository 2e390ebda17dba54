package heartbeat_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/internal/faultnet/toxi"
	"github.com/fb4b1dcc/pulse/wire"
)

// trackingListener remembers accepted connections so a test can cut them.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

// TestHTTPSReusesOneConnectionAcrossCertRotation: 1,000 HTTPS beats open
// at most 2 TLS connections, counted on the server. Halfway the server's
// certificate rotates and the server drops its connections (as a restart
// would): the sender reconnects once, the new handshake gets the new
// certificate, and every beat is observed exactly once.
func TestHTTPSReusesOneConnectionAcrossCertRotation(t *testing.T) {
	const beats = 1000
	ca := newCA(t)
	oldCert, newCert := ca.issue(t, "monitor-old"), ca.issue(t, "monitor-new")
	var current atomic.Pointer[tls.Certificate]
	current.Store(oldCert)
	var hellos, servedOld, servedNew atomic.Int64
	serverTLS := &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { hellos.Add(1); return nil, nil },
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c := current.Load()
			if c == oldCert {
				servedOld.Add(1)
			} else {
				servedNew.Add(1)
			}
			return c, nil
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := &trackingListener{Listener: ln}
	s := newSink()
	r, err := ingest.New(ingest.Config{HTTPListener: tl, TLS: serverTLS, Sink: s, Tokens: map[string][]string{"api": {token}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rdone := make(chan error, 1)
	go func() { rdone <- r.Run(ctx) }()
	defer func() { cancel(); <-rdone }()
	<-r.Ready()

	// 3 ms between beats keeps the test short. When both send slots are
	// busy (the first handshake, a pause on this shared machine) a beat is
	// skipped by design rather than queued; that may happen to a few. Every
	// beat that is sent must be ACKed.
	interval := 3 * time.Millisecond
	if raceEnabled {
		interval = 12 * time.Millisecond // an HTTPS exchange under -race takes several ms
	}
	var acked atomic.Int64
	allAcked := make(chan struct{})
	res := newResults()
	snd, err := heartbeat.New(heartbeat.Config{
		Service: "api", Instance: "api-1", Transport: wire.HTTP, Target: "https://" + ln.Addr().String(), Token: token,
		TLS: &tls.Config{RootCAs: ca.pool}, Interval: interval, Jitter: interval / 3, Timeout: 2 * time.Second,
		OnResult: func(r heartbeat.Result) {
			res.add(r)
			if !r.Acked {
				return
			}
			switch acked.Add(1) {
			case beats / 2:
				current.Store(newCert)
				tl.cut()
			case beats:
				close(allAcked)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, snd)
	select {
	case <-allAcked:
	case <-time.After(60 * time.Second):
		t.Fatalf("only %d beats ACKed in 60s", acked.Load())
	}
	stop()
	rs := res.all()
	ackedSeqs := map[uint64]bool{}
	skipped := 0
	for _, r := range rs {
		if r.Acked {
			ackedSeqs[r.Seq] = true
			continue
		}
		if errors.Is(r.Err, heartbeat.ErrBusy) {
			skipped++
			continue
		}
		if r.Err != nil && errors.Is(r.Err, context.Canceled) {
			continue // in flight at stop
		}
		t.Fatalf("beat %d not acknowledged: %+v", r.Seq, r)
	}
	if skipped > beats/20 {
		t.Fatalf("%d beats skipped for busy send slots, want ≤ 5%%", skipped)
	}
	obs := s.waitFor(t, 5*time.Second, func(o []ingest.Observation) bool { return len(o) >= beats })
	seen := map[uint64]bool{}
	for _, o := range obs {
		if seen[o.Seq] {
			t.Fatalf("seq %d observed twice", o.Seq)
		}
		seen[o.Seq] = true
	}
	for seq := range ackedSeqs {
		if !seen[seq] {
			t.Fatalf("seq %d ACKed but never observed", seq)
		}
	}
	st := snd.Stats()
	t.Logf("%d beats ACKed, %d skipped; TLS hellos at the server %d (old cert %d, new cert %d); sender: %d connections, %d handshakes, %v handshake time, %d retries, SRTT %v",
		len(ackedSeqs), skipped, hellos.Load(), servedOld.Load(), servedNew.Load(), st.ConnsOpened, st.TLSHandshakes, st.HandshakeTime, st.Retries, st.SRTT)
	if hellos.Load() > 2 || servedOld.Load() != 1 || servedNew.Load() != 1 {
		t.Fatalf("%d TLS handshakes at the server (old cert %d, new %d); want 2: one per connection, the second with the rotated certificate",
			hellos.Load(), servedOld.Load(), servedNew.Load())
	}
	if st.ConnsOpened != 2 || st.TLSHandshakes != 2 || st.HandshakeTime <= 0 {
		t.Fatalf("sender stats %+v", st)
	}
	// Handshake time is reported apart and only for the beat that paid it.
	paid := 0
	for _, r := range rs {
		if r.Handshake > 0 {
			paid++
			if r.Reused {
				t.Fatalf("beat %d: handshake on a reused connection", r.Seq)
			}
		}
	}
	if paid != 2 {
		t.Fatalf("%d beats report a handshake, want 2", paid)
	}
}

// TestBlackholedConnectionFailsOverWithinOneTimeout: a toxiproxy timeout
// toxic blackholes the established keep-alive connection. The next beat's
// first attempt on the pooled connection times out at half the timeout and
// is retried at once on a fresh connection, which succeeds: within one
// timeout in total. Fresh connections bypass the dead path, as after a
// load-balancer failover.
func TestBlackholedConnectionFailsOverWithinOneTimeout(t *testing.T) {
	m := startMonitor(t, testKey(t), monitorOpts{http: true})
	direct := strings.TrimPrefix(m.http, "http://")
	proxy, err := toxi.New(direct)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	var dead atomic.Bool
	var dials atomic.Int64
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		if dead.Load() {
			addr = direct
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	const timeout = 400 * time.Millisecond
	type done struct {
		r   heartbeat.Result
		end time.Time
	}
	var mu sync.Mutex
	var got []done
	res := newResults()
	snd, err := heartbeat.New(heartbeat.Config{
		Service: "api", Instance: "api-1", Transport: wire.HTTP, Target: "http://" + proxy.Addr(), Token: token,
		Interval: 500 * time.Millisecond, Jitter: 20 * time.Millisecond, Timeout: timeout,
		OnResult: func(r heartbeat.Result) {
			mu.Lock()
			got = append(got, done{r, time.Now()})
			mu.Unlock()
			res.add(r)
		},
	}, heartbeat.WithDialer(dialer))
	if err != nil {
		t.Fatal(err)
	}
	run(t, snd)
	res.waitN(t, 3, 5*time.Second)
	if err := proxy.Blackhole(); err != nil {
		t.Fatal(err)
	}
	dead.Store(true)
	rs := res.waitN(t, 6, 5*time.Second)
	for _, r := range rs[:6] {
		if r.Seq != 4 && (!r.Acked || r.Attempts != 1) {
			t.Fatalf("beat %d (before the blackhole or after fail-over): %+v", r.Seq, r)
		}
	}
	mu.Lock()
	var next done
	for _, d := range got {
		if d.r.Seq == 4 {
			next = d
		}
	}
	mu.Unlock()
	if !next.r.Acked || next.r.Attempts != 2 || next.r.Reused {
		t.Fatalf("first beat after the blackhole: %+v; want ACKed on the second attempt over a fresh connection", next.r)
	}
	if took := next.end.Sub(next.r.SentAt); took >= timeout {
		t.Fatalf("fail-over took %v, want < one timeout (%v)", took, timeout)
	}
	st := snd.Stats()
	if st.Retries != 1 || st.ConnsOpened != 2 || dials.Load() != 2 {
		t.Fatalf("retries %d conns %d dials %d; want 1, 2, 2", st.Retries, st.ConnsOpened, dials.Load())
	}
}

// TestBlockedSendDoesNotDelayLaterBeats: the monitor holds the first beat
// for three intervals (the sender's timeout allows four). The beats after
// it still leave and arrive on schedule, through the other send slot.
func TestBlockedSendDoesNotDelayLaterBeats(t *testing.T) {
	const interval = 100 * time.Millisecond
	s := newSink()
	r, err := ingest.New(ingest.Config{Sink: s, Tokens: map[string][]string{"api": {token}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rdone := make(chan error, 1)
	go func() { rdone <- r.Run(ctx) }()
	defer func() { cancel(); <-rdone }()
	<-r.Ready()
	var first atomic.Bool
	release := make(chan struct{})
	h := r.Handler()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if first.CompareAndSwap(false, true) {
			select {
			case <-release:
			case <-time.After(3 * interval):
			}
		}
		h.ServeHTTP(w, req)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	defer close(release)

	res := newResults()
	snd, err := heartbeat.New(heartbeat.Config{
		Service: "api", Instance: "api-1", Transport: wire.HTTP, Target: "http://" + ln.Addr().String(), Token: token,
		Interval: interval, Jitter: 5 * time.Millisecond, Timeout: 4 * interval, OnResult: res.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, snd)
	obs := s.waitFor(t, 5*time.Second, func(o []ingest.Observation) bool { return len(o) >= 6 })
	// Beat 1 arrives last of the first four; beats 2, 3, 4 on schedule.
	var at [7]time.Time
	for _, o := range obs {
		if o.Seq <= 6 {
			at[o.Seq] = o.ReceivedAt
		}
	}
	for seq := 3; seq <= 6; seq++ {
		gap := at[seq].Sub(at[seq-1])
		// A send that held up the schedule would leave a gap of three
		// intervals here; the bound leaves room for a loaded machine.
		if gap < interval/2 || gap >= 2*interval {
			t.Fatalf("beat %d arrived %v after beat %d; want about the interval %v", seq, gap, seq-1, interval)
		}
	}
	if !at[1].After(at[3]) {
		t.Fatalf("beat 1 was not held: arrived %v, beat 3 at %v", at[1], at[3])
	}
	if st := snd.Stats(); st.Skipped != 0 || st.Late != 0 {
		t.Fatalf("stats %+v: no beat may be skipped or late", st)
	}
	if rs := res.waitN(t, 4, 2*time.Second); rs[len(rs)-1].Seq == 0 {
		t.Fatal("no results")
	}
}
