package ingest

import (
	"net"
	"net/netip"
	"time"

	"github.com/fb4b1dcc/pulse/wire"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// readBufSize is larger than any valid beat so that an oversized datagram
// is seen as such instead of being silently cut to a valid-looking length.
const readBufSize = 1024

// batchConn reads datagrams and writes ACKs in batches (recvmmsg and
// sendmmsg on Linux). Each reader goroutine owns one; they share the socket.
type batchConn interface {
	// read blocks until at least one datagram is available and reads up to
	// the batch size; it returns how many.
	read() (int, error)
	// packet returns datagram i of the last read: its bytes (valid until the
	// next read), its source, and whether it was longer than the buffer.
	packet(i int) (data []byte, from netip.AddrPort, truncated bool)
	// ackBuf returns the reusable buffer for ACK j (cap wire.AckSize).
	ackBuf(j int) []byte
	// writeAcks sends acks[j] (len n) to the source of packet to[j].
	writeAcks(acks [][]byte, to []int) (int, error)
}

func newBatchConn(c *net.UDPConn, batch int, portable bool) (batchConn, error) {
	if !portable {
		if bc, err := newMmsgConn(c, batch); bc != nil || err != nil {
			return bc, err
		}
	}
	return newXnetConn(c, batch), nil
}

// xnetConn uses golang.org/x/net's ReadBatch/WriteBatch. It works on every
// platform, but allocates the source address of every datagram, so Linux
// uses mmsgConn instead.
type xnetConn struct {
	c     *net.UDPConn
	v4    *ipv4.PacketConn
	v6    *ipv6.PacketConn
	msgs  []ipv4.Message
	wmsgs []ipv4.Message
	acks  [][]byte
}

func newXnetConn(c *net.UDPConn, batch int) *xnetConn {
	x := &xnetConn{c: c, msgs: make([]ipv4.Message, batch), wmsgs: make([]ipv4.Message, batch), acks: make([][]byte, batch)}
	if la, ok := c.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() != nil {
		x.v4 = ipv4.NewPacketConn(c)
	} else {
		x.v6 = ipv6.NewPacketConn(c)
	}
	for i := range x.msgs {
		x.msgs[i].Buffers = [][]byte{make([]byte, readBufSize)}
		x.wmsgs[i].Buffers = make([][]byte, 1)
		x.acks[i] = make([]byte, 0, wire.AckSize)
	}
	return x
}

func (x *xnetConn) read() (int, error) {
	if x.v4 != nil {
		return x.v4.ReadBatch(x.msgs, 0)
	}
	return x.v6.ReadBatch(x.msgs, 0)
}

func (x *xnetConn) packet(i int) ([]byte, netip.AddrPort, bool) {
	m := &x.msgs[i]
	var from netip.AddrPort
	if ua, ok := m.Addr.(*net.UDPAddr); ok {
		from = ua.AddrPort()
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	}
	return m.Buffers[0][:m.N], from, m.N >= readBufSize
}

func (x *xnetConn) ackBuf(j int) []byte { return x.acks[j][:0] }

func (x *xnetConn) writeAcks(acks [][]byte, to []int) (int, error) {
	for j := range acks {
		x.wmsgs[j].Buffers[0] = acks[j]
		x.wmsgs[j].Addr = x.msgs[to[j]].Addr
	}
	_ = x.c.SetWriteDeadline(time.Now().Add(time.Second))
	sent := 0
	for sent < len(acks) {
		var n int
		var err error
		if x.v4 != nil {
			n, err = x.v4.WriteBatch(x.wmsgs[sent:len(acks)], 0)
		} else {
			n, err = x.v6.WriteBatch(x.wmsgs[sent:len(acks)], 0)
		}
		sent += n
		if err != nil {
			return sent, err
		}
		if n == 0 {
			break
		}
	}
	return sent, nil
}
