package wire

import (
	"encoding/binary"
	"time"

	"github.com/fb4b1dcc/pulse/status"
)

// Protocol constants. docs/protocol.md documents every one of them.
const (
	Magic0  byte = 'P'
	Magic1  byte = 'B'
	Version byte = 1

	TypeBeat byte = 1
	TypeAck  byte = 2

	// FlagTrace marks a beat that carries a W3C trace context.
	FlagTrace byte = 1 << 0

	TagLen      = 16 // truncated HMAC-SHA256
	MaxIDLen    = 128
	beatFixed   = 46 // header up to and including the two id lengths
	traceLen    = 26 // version, trace-id, parent-id, flags
	MinBeatSize = beatFixed + 1 + 1 + TagLen
	// MaxBeatSize is the largest valid beat. Receivers read into a larger
	// buffer so that a longer datagram is seen (and counted) as oversized
	// rather than silently truncated.
	MaxBeatSize = beatFixed + 2*MaxIDLen + traceLen + TagLen
	AckSize     = 48 + TagLen
)

// Beat is one heartbeat. Service and Instance alias the packet they were
// decoded from; copy or intern them before the buffer is reused.
type Beat struct {
	Attempt  uint8         // 0 for the first transmission, n for the n-th retransmission
	Status   status.Status // the sender's own view of its health
	Reason   Reason        // why Status is what it is (0 = none)
	KeyID    uint16        // which of the service's keys signed the beat
	Interval time.Duration // the interval the sender is using now (ms resolution on the wire)
	Epoch    uint64        // sender restart epoch: grows on every sender start
	Seq      uint64        // per-epoch sequence number, +1 per beat (not per retransmission)
	SentAt   time.Duration // sender's monotonic clock at this transmission, from its own origin
	RTT      time.Duration // sender's smoothed RTT estimate (µs resolution; 0 = unknown)
	Service  []byte
	Instance []byte
	Trace    TraceContext // zero when absent

	// Set by DecodeBeat: the bytes covered by the tag, and the tag.
	Signed []byte
	Tag    []byte
}

// AppendBeat encodes b, signs it with k and appends the packet to dst.
// It validates what a receiver would reject, so a sender learns about a bad
// id at once instead of through silence.
func AppendBeat(dst []byte, b *Beat, k *Key) ([]byte, error) {
	if k == nil {
		return dst, ErrNoKey
	}
	if err := validID(b.Service); err != nil {
		return dst, err
	}
	if err := validID(b.Instance); err != nil {
		return dst, err
	}
	if !b.Status.Valid() {
		return dst, ErrStatus
	}
	var flags byte
	if b.Trace.IsValid() {
		flags |= FlagTrace
	}
	start := len(dst)
	dst = append(dst, Magic0, Magic1, Version, TypeBeat, flags, b.Attempt, byte(b.Status), 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(b.Reason))
	dst = binary.BigEndian.AppendUint16(dst, k.ID())
	dst = binary.BigEndian.AppendUint32(dst, durMS(b.Interval))
	dst = binary.BigEndian.AppendUint64(dst, b.Epoch)
	dst = binary.BigEndian.AppendUint64(dst, b.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(max(b.SentAt, 0)))
	dst = binary.BigEndian.AppendUint32(dst, durUS(b.RTT))
	dst = append(dst, byte(len(b.Service)), byte(len(b.Instance)))
	dst = append(dst, b.Service...)
	dst = append(dst, b.Instance...)
	if flags&FlagTrace != 0 {
		dst = b.Trace.appendBinary(dst)
	}
	return k.appendTag(dst, dst[start:], nil, nil), nil
}

// DecodeBeat parses p into b without verifying the tag (the key depends on
// the service named inside). It never allocates; b's byte slices alias p.
func DecodeBeat(p []byte, b *Beat) error {
	if len(p) > MaxBeatSize {
		return ErrOversized
	}
	if err := header(p, TypeBeat, MinBeatSize); err != nil {
		return err
	}
	flags := p[4]
	if flags&^FlagTrace != 0 || p[7] != 0 {
		return ErrFlags
	}
	st := status.Status(p[6])
	if !st.Valid() {
		return ErrStatus
	}
	sl, il := int(p[44]), int(p[45])
	n := beatFixed + sl + il + TagLen
	if flags&FlagTrace != 0 {
		n += traceLen
	}
	if len(p) < n {
		return ErrShort
	}
	if len(p) > n {
		return ErrTrailing
	}
	svc := p[beatFixed : beatFixed+sl]
	inst := p[beatFixed+sl : beatFixed+sl+il]
	if err := validID(svc); err != nil {
		return err
	}
	if err := validID(inst); err != nil {
		return err
	}
	var tc TraceContext
	if flags&FlagTrace != 0 {
		off := beatFixed + sl + il
		if !tc.decodeBinary(p[off : off+traceLen]) {
			return ErrTrace
		}
	}
	sent := binary.BigEndian.Uint64(p[32:40])
	if sent > 1<<63-1 {
		return ErrRange
	}
	*b = Beat{
		Attempt:  p[5],
		Status:   st,
		Reason:   Reason(binary.BigEndian.Uint16(p[8:10])),
		KeyID:    binary.BigEndian.Uint16(p[10:12]),
		Interval: time.Duration(binary.BigEndian.Uint32(p[12:16])) * time.Millisecond,
		Epoch:    binary.BigEndian.Uint64(p[16:24]),
		Seq:      binary.BigEndian.Uint64(p[24:32]),
		SentAt:   time.Duration(sent),
		RTT:      time.Duration(binary.BigEndian.Uint32(p[40:44])) * time.Microsecond,
		Service:  svc,
		Instance: inst,
		Trace:    tc,
		Signed:   p[:n-TagLen],
		Tag:      p[n-TagLen : n],
	}
	return nil
}

// Verify reports whether the decoded beat's tag was made with k. It is
// constant-time in the tag comparison and does not allocate.
func (b *Beat) Verify(k *Key) bool {
	if k == nil || k.ID() != b.KeyID || len(b.Tag) != TagLen {
		return false
	}
	return k.verify(b.Signed, nil, nil, b.Tag)
}

// header checks the four bytes every packet starts with and a minimum size.
func header(p []byte, typ byte, minLen int) error {
	if len(p) < 4 {
		return ErrShort
	}
	if p[0] != Magic0 || p[1] != Magic1 {
		return ErrMagic
	}
	if p[2] != Version {
		return ErrVersion
	}
	if p[3] != typ {
		return ErrType
	}
	if len(p) < minLen {
		return ErrShort
	}
	return nil
}

// validID accepts 1..MaxIDLen bytes of visible ASCII (0x21..0x7e): ids end
// up in logs, metric labels and URLs, so spaces and control bytes are out.
func validID(id []byte) error {
	if len(id) == 0 || len(id) > MaxIDLen {
		return ErrID
	}
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			return ErrID
		}
	}
	return nil
}

// ValidID reports whether s is a valid service or instance id.
func ValidID(s string) error {
	if len(s) == 0 || len(s) > MaxIDLen {
		return ErrID
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return ErrID
		}
	}
	return nil
}

func durMS(d time.Duration) uint32 {
	ms := d / time.Millisecond
	switch {
	case ms <= 0:
		return 0
	case ms > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(ms)
}

func durUS(d time.Duration) uint32 {
	us := d / time.Microsecond
	switch {
	case us <= 0:
		return 0
	case us > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(us)
}
