package incidents

// Shared helpers of the AP-01..AP-09 replays (part A). The lead's
// harness_test.go is not touched; names here carry an "a" prefix or an
// AP-specific one so the other half of the suite cannot collide with them.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fb4b1dcc/pulse/monitor"
)

// aRaceEnabled reports whether the test binary was built with -race.
func aRaceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// aDB is a real TCP "database": one request line in, one answer line out.
// Hang makes it read requests and never answer (a wedged database, a
// saturated connection pool, a network partition that keeps the socket
// open); Close ends every connection, which is the only thing that frees a
// client blocked on it without a deadline.
type aDB struct {
	ln      net.Listener
	hang    atomic.Bool
	queries atomic.Int64
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

func newADB(t testing.TB) *aDB {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	db := &aDB{ln: ln, conns: map[net.Conn]struct{}{}}
	db.wg.Add(1)
	go db.accept()
	t.Cleanup(db.Close)
	return db
}

func (db *aDB) Addr() string { return db.ln.Addr().String() }

func (db *aDB) accept() {
	defer db.wg.Done()
	for {
		c, err := db.ln.Accept()
		if err != nil {
			return
		}
		db.mu.Lock()
		if db.closed {
			db.mu.Unlock()
			c.Close()
			return
		}
		db.conns[c] = struct{}{}
		db.wg.Add(1)
		db.mu.Unlock()
		go db.serve(c)
	}
}

func (db *aDB) serve(c net.Conn) {
	defer db.wg.Done()
	defer func() {
		db.mu.Lock()
		delete(db.conns, c)
		db.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReader(c)
	for {
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
		db.queries.Add(1)
		if db.hang.Load() {
			// Never answer; the connection stays open until Close.
			io.Copy(io.Discard, r)
			return
		}
		if _, err := c.Write([]byte("1\n")); err != nil {
			return
		}
	}
}

// Close closes the listener and every connection and waits for the
// serving goroutines. Idempotent.
func (db *aDB) Close() {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return
	}
	db.closed = true
	db.ln.Close()
	for c := range db.conns {
		c.Close()
	}
	db.mu.Unlock()
	db.wg.Wait()
}

// aQueryNoDeadline is the seed's db.QueryRow("SELECT 1 ...").Scan: dial,
// send, wait for the answer, with no deadline and no context anywhere.
func aQueryNoDeadline(addr string) error {
	//pulselint:ignore nettimeout the naive variant replays the seed's anti-pattern on purpose
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("SELECT 1 FROM health_check WHERE service = 'api'\n")); err != nil {
		return err
	}
	_, err = bufio.NewReader(c).ReadString('\n')
	return err
}

// aPKI is a test CA that issues server certificates for 127.0.0.1.
type aPKI struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	Pool   *x509.CertPool
	serial int64
}

func newAPKI(t testing.TB) *aPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "incidents test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &aPKI{ca: ca, caKey: key, Pool: pool, serial: 1}
}

// Issue returns a fresh server certificate (new key, next serial) for
// 127.0.0.1 and localhost, as PEM.
func (p *aPKI) Issue(t testing.TB) (certPEM, keyPEM []byte, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: "pulse monitor"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), p.serial
}

// IssueFiles writes a fresh certificate and key to dir/name.crt and
// dir/name.key (atomically, by rename, as a certificate manager does).
func (p *aPKI) IssueFiles(t testing.TB, dir, name string) (certFile, keyFile string, serial int64) {
	t.Helper()
	c, k, serial := p.Issue(t)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	for _, f := range []struct {
		path string
		data []byte
	}{{keyFile, k}, {certFile, c}} {
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile, serial
}

// ClientTLS is a client config trusting the CA.
func (p *aPKI) ClientTLS() *tls.Config {
	return &tls.Config{RootCAs: p.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// aConnCounter is a TCP forwarder in front of a server that counts the
// connections the server is asked to accept: what a server-side
// connection count sees, without changing the server.
type aConnCounter struct {
	ln       net.Listener
	upstream string
	accepted atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
}

func newAConnCounter(t testing.TB, upstream string) *aConnCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &aConnCounter{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	c.wg.Add(1)
	go c.accept()
	t.Cleanup(c.Close)
	return c
}

func (c *aConnCounter) Addr() string    { return c.ln.Addr().String() }
func (c *aConnCounter) Accepted() int64 { return c.accepted.Load() }

func (c *aConnCounter) accept() {
	defer c.wg.Done()
	for {
		down, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.accepted.Add(1)
		up, err := net.DialTimeout("tcp", c.upstream, 2*time.Second)
		if err != nil {
			down.Close()
			continue
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			down.Close()
			up.Close()
			return
		}
		c.conns[down], c.conns[up] = struct{}{}, struct{}{}
		c.wg.Add(2)
		c.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer c.wg.Done()
			io.Copy(dst, src)
			// Either side closing ends the pair.
			dst.Close()
			src.Close()
			c.mu.Lock()
			delete(c.conns, dst)
			delete(c.conns, src)
			c.mu.Unlock()
		}
		go pipe(up, down)
		go pipe(down, up)
	}
}

// CloseConns drops every established connection (both sides closed, as a
// load balancer restart would); new connections are still forwarded.
func (c *aConnCounter) CloseConns() {
	c.mu.Lock()
	for k := range c.conns {
		k.Close()
	}
	c.mu.Unlock()
}

// Close stops forwarding and waits for the copying goroutines. Idempotent.
func (c *aConnCounter) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.ln.Close()
	for k := range c.conns {
		k.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// aTransitions returns an instance's transitions so far, as "from→to",
// from the monitor's event memory.
func aTransitions(m *monitor.Monitor, service, instance string) []string {
	w := m.Watch(0)
	defer w.Close()
	var out []string
	for {
		evs, err := w.Next(nil, 1<<16)
		for _, e := range evs {
			if e.Service == service && e.Instance == instance {
				out = append(out, e.From+"→"+e.To)
			}
		}
		if len(evs) == 0 || err != nil {
			return out
		}
	}
}

// aGoroutines counts the goroutines whose stack mentions any of the given
// function-name fragments: a count that goroutines of other tests, still
// winding down, cannot disturb (runtime.NumGoroutine counts them too).
func aGoroutines(fragments ...string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		for _, f := range fragments {
			if strings.Contains(g, f) {
				count++
				break
			}
		}
	}
	return count
}

// aSettledBaseline snapshots the goroutines that exist once their set has
// stopped growing (a daemon that just reported ready may still be starting
// its last loops), for goleak.Find to ignore.
func aSettledBaseline(t testing.TB) goleak.Option {
	t.Helper()
	for range 20 {
		base := goleak.IgnoreCurrent()
		time.Sleep(50 * time.Millisecond)
		if goleak.Find(base) == nil {
			return base
		}
	}
	t.Fatal("the goroutines never settled")
	return nil
}
