package detection

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func netTransport(t *testing.T) (*memberlist.NetTransport, string) {
	t.Helper()
	for range 20 {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0, Logger: log.New(io.Discard, "", 0)})
		if err == nil {
			return nt, fmt.Sprintf("127.0.0.1:%d", nt.GetAutoBindPort())
		}
	}
	t.Fatal("no port for a memberlist transport")
	return nil, ""
}

// TestLossHitsEveryUDPPacketOnce sends real datagrams through the wrapper:
// each is lost with the configured probability, and what is not lost
// arrives.
func TestLossHitsEveryUDPPacketOnce(t *testing.T) {
	a, aAddr := netTransport(t)
	b, bAddr := netTransport(t)
	f := newFaults()
	ta := newFaultTransport(a, aAddr, f, 1)
	defer ta.Shutdown()
	defer b.Shutdown()
	f.setLoss(0.3)
	const n = 3000
	got := make(chan int)
	go func() {
		k := 0
		timeout := time.NewTimer(10 * time.Second)
		defer timeout.Stop()
		for {
			select {
			case <-b.PacketCh():
				k++
				if int64(k) == n-f.udpLost.Load() && f.udpSent.Load() == n {
					got <- k
					return
				}
			case <-timeout.C:
				got <- k
				return
			}
		}
	}()
	for i := range n {
		if _, err := ta.WriteTo([]byte(fmt.Sprintf("packet %d", i)), bAddr); err != nil {
			t.Fatal(err)
		}
	}
	received := <-got
	lost := f.udpLost.Load()
	if int64(received) != n-lost {
		t.Fatalf("received %d, want every packet not lost: %d", received, n-lost)
	}
	// 30 % of 3000 is 900, σ ≈ 25: five σ either way.
	if lost < 775 || lost > 1025 {
		t.Fatalf("lost %d of %d at p=0.3", lost, n)
	}
	if f.bytes.Load() < int64(n*len("packet 0")) {
		t.Fatalf("counted %d bytes for %d packets", f.bytes.Load(), n)
	}
}

// TestCutMemberCannotConnect: while cut off, dials to and from the member
// time out at their deadline (SYNs lost), and its datagrams vanish; after,
// a dial connects and its bytes are counted both ways.
func TestCutMemberCannotConnect(t *testing.T) {
	a, aAddr := netTransport(t)
	b, bAddr := netTransport(t)
	f := newFaults()
	ta := newFaultTransport(a, aAddr, f, 2)
	defer ta.Shutdown()
	defer b.Shutdown()

	f.setCut(bAddr)
	start := time.Now()
	_, err := ta.DialTimeout(bAddr, 300*time.Millisecond)
	took := time.Since(start)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("dial to a cut member: %v, want a timeout", err)
	}
	if took < 290*time.Millisecond || took > time.Second {
		t.Fatalf("dial failed after %v, want its 300ms timeout", took)
	}
	// A longer timeout sees the kernel's SYN retransmissions, all lost.
	start = time.Now()
	if _, err := ta.DialTimeout(bAddr, 1500*time.Millisecond); err == nil || time.Since(start) < 1400*time.Millisecond {
		t.Fatalf("dial with 1.5s timeout to a cut member: %v after %v", err, time.Since(start))
	}
	if _, err := ta.WriteTo([]byte("x"), bAddr); err != nil || f.udpLost.Load() != 1 {
		t.Fatalf("datagram to a cut member: err %v, lost %d", err, f.udpLost.Load())
	}

	f.setCut()
	conn, err := ta.DialTimeout(bAddr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer := <-b.StreamCh()
	defer peer.Close()
	before := f.bytes.Load()
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(peer, buf); err != nil {
		t.Fatal(err)
	}
	if _, err := peer.Write([]byte("world!")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 6)
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatal(err)
	}
	if d := f.bytes.Load() - before; d != 11 {
		t.Fatalf("counted %d TCP bytes, want 11 (5 written, 6 read)", d)
	}
	if f.dialsLost.Load() != 2 || f.dials.Load() != 3 {
		t.Fatalf("dials %d, lost %d; want 3 and 2", f.dials.Load(), f.dialsLost.Load())
	}
}
