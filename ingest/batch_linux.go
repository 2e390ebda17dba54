//go:build linux

package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"github.com/fb4b1dcc/pulse/wire"
	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr from <sys/socket.h>.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// mmsgConn calls recvmmsg/sendmmsg directly through the socket's RawConn,
// with every header, iovec, address and buffer allocated once. Unlike
// x/net's ReadBatch it parses source addresses into netip.AddrPort values,
// so a read allocates nothing.
type mmsgConn struct {
	c  *net.UDPConn
	rc syscall.RawConn

	hs    []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	bufs  [][]byte

	whs   []mmsghdr
	wiovs []unix.Iovec
	acks  [][]byte

	// results of the RawConn callbacks, bound once so calls do not allocate
	n       int // datagrams of the last recvmmsg
	wn      int // ACKs sent so far by the current sendmmsg loop
	errno   syscall.Errno
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
	wcount  int
}

func newMmsgConn(c *net.UDPConn, batch int) (batchConn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("ingest: UDP raw conn: %w", err)
	}
	m := &mmsgConn{
		c: c, rc: rc,
		hs: make([]mmsghdr, batch), iovs: make([]unix.Iovec, batch),
		names: make([]unix.RawSockaddrInet6, batch), bufs: make([][]byte, batch),
		whs: make([]mmsghdr, batch), wiovs: make([]unix.Iovec, batch), acks: make([][]byte, batch),
	}
	slab := make([]byte, batch*readBufSize)
	for i := range batch {
		m.bufs[i] = slab[i*readBufSize : (i+1)*readBufSize : (i+1)*readBufSize]
		m.iovs[i].Base = &m.bufs[i][0]
		m.iovs[i].SetLen(readBufSize)
		m.hs[i].hdr.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		m.hs[i].hdr.Iov = &m.iovs[i]
		m.hs[i].hdr.SetIovlen(1)
		m.acks[i] = make([]byte, 0, wire.AckSize)
		m.whs[i].hdr.Iov = &m.wiovs[i]
		m.whs[i].hdr.SetIovlen(1)
	}
	m.readFn = m.recv
	m.writeFn = m.send
	return m, nil
}

func (m *mmsgConn) recv(fd uintptr) bool {
	for i := range m.hs {
		m.hs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		m.hs[i].hdr.Flags = 0
		m.hs[i].len = 0
	}
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.hs[0])), uintptr(len(m.hs)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			m.n, m.errno = int(n), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait until readable
		default:
			m.n, m.errno = 0, e
			return true
		}
	}
}

func (m *mmsgConn) read() (int, error) {
	if err := m.rc.Read(m.readFn); err != nil {
		return 0, err
	}
	if m.errno != 0 {
		return 0, fmt.Errorf("ingest: recvmmsg: %w", m.errno)
	}
	return m.n, nil
}

func (m *mmsgConn) packet(i int) ([]byte, netip.AddrPort, bool) {
	n := int(m.hs[i].len)
	trunc := m.hs[i].hdr.Flags&unix.MSG_TRUNC != 0 || n > readBufSize
	n = min(n, readBufSize)
	return m.bufs[i][:n], sockaddrToAddrPort(&m.names[i]), trunc
}

func sockaddrToAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

func (m *mmsgConn) ackBuf(j int) []byte { return m.acks[j][:0] }

func (m *mmsgConn) send(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.whs[m.wn])), uintptr(m.wcount-m.wn), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			m.wn += int(n)
			if m.wn >= m.wcount || n == 0 {
				return true
			}
		case unix.EINTR:
			continue
		default:
			// EAGAIN included: the socket buffer is full. The reader never
			// waits to write an ACK; an unsent ACK is counted, and the
			// sender retransmits and gets a duplicate ACK.
			m.errno = e
			return true
		}
	}
}

var errShortWrite = errors.New("ingest: sendmmsg sent nothing")

func (m *mmsgConn) writeAcks(acks [][]byte, to []int) (int, error) {
	for j, a := range acks {
		i := to[j]
		m.wiovs[j].Base = &a[:1][0]
		m.wiovs[j].SetLen(len(a))
		m.whs[j].hdr.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		m.whs[j].hdr.Namelen = m.hs[i].hdr.Namelen
	}
	m.wn, m.wcount, m.errno = 0, len(acks), 0
	if err := m.rc.Write(m.writeFn); err != nil {
		return m.wn, err
	}
	if m.errno != 0 {
		return m.wn, fmt.Errorf("ingest: sendmmsg: %w", m.errno)
	}
	if m.wn < len(acks) {
		return m.wn, errShortWrite
	}
	return m.wn, nil
}
