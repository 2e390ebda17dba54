package wire

import (
	"encoding/binary"
	"time"
)

// AckCode says what the receiver did with the beat an ACK answers.
type AckCode uint8

const (
	AckAccepted  AckCode = 0 // new beat, handed on
	AckDuplicate AckCode = 1 // already seen (a retransmission whose first copy arrived); stop retransmitting
	maxAckCode           = AckDuplicate
)

func (c AckCode) String() string {
	switch c {
	case AckAccepted:
		return "accepted"
	case AckDuplicate:
		return "duplicate"
	}
	return "unknown"
}

// Directive is what the monitor wants a sender to use from now on. A zero
// field means "keep what you have".
type Directive struct {
	Interval time.Duration
	Jitter   time.Duration
	Timeout  time.Duration
}

// Ack answers one beat. It echoes the beat's epoch, sequence and send time,
// so the sender can match it to the transmission it answers and measure the
// round trip without keeping per-transmission state.
type Ack struct {
	Code   AckCode
	KeyID  uint16 // the key id of the beat being answered; the ACK is signed with that key
	Epoch  uint64
	Seq    uint64
	SentAt time.Duration
	Directive

	// Set by DecodeAck.
	Signed []byte
	Tag    []byte
}

// AppendAck encodes a, signs it with k bound to the service and instance of
// the beat it answers (which are not sent again), and appends it to dst.
func AppendAck(dst []byte, a *Ack, k *Key, service, instance []byte) ([]byte, error) {
	if k == nil {
		return dst, ErrNoKey
	}
	start := len(dst)
	dst = append(dst, Magic0, Magic1, Version, TypeAck, 0, byte(a.Code), 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, k.ID())
	dst = binary.BigEndian.AppendUint32(dst, durMS(a.Interval))
	dst = binary.BigEndian.AppendUint64(dst, a.Epoch)
	dst = binary.BigEndian.AppendUint64(dst, a.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(max(a.SentAt, 0)))
	dst = binary.BigEndian.AppendUint32(dst, durMS(a.Jitter))
	dst = binary.BigEndian.AppendUint32(dst, durMS(a.Timeout))
	return k.appendTag(dst, dst[start:], service, instance), nil
}

// DecodeAck parses p into a without verifying the tag. It never allocates.
func DecodeAck(p []byte, a *Ack) error {
	if len(p) > AckSize {
		return ErrOversized
	}
	if err := header(p, TypeAck, AckSize); err != nil {
		return err
	}
	if p[4] != 0 || p[6] != 0 || p[7] != 0 || p[8] != 0 || p[9] != 0 {
		return ErrFlags
	}
	code := AckCode(p[5])
	if code > maxAckCode {
		return ErrCode
	}
	sent := binary.BigEndian.Uint64(p[32:40])
	if sent > 1<<63-1 {
		return ErrRange
	}
	*a = Ack{
		Code:   code,
		KeyID:  binary.BigEndian.Uint16(p[10:12]),
		Epoch:  binary.BigEndian.Uint64(p[16:24]),
		Seq:    binary.BigEndian.Uint64(p[24:32]),
		SentAt: time.Duration(sent),
		Directive: Directive{
			Interval: time.Duration(binary.BigEndian.Uint32(p[12:16])) * time.Millisecond,
			Jitter:   time.Duration(binary.BigEndian.Uint32(p[40:44])) * time.Millisecond,
			Timeout:  time.Duration(binary.BigEndian.Uint32(p[44:48])) * time.Millisecond,
		},
		Signed: p[:AckSize-TagLen],
		Tag:    p[AckSize-TagLen : AckSize],
	}
	return nil
}

// Verify reports whether the ACK was signed with k for this service and
// instance.
func (a *Ack) Verify(k *Key, service, instance []byte) bool {
	if k == nil || k.ID() != a.KeyID || len(a.Tag) != TagLen {
		return false
	}
	return k.verify(a.Signed, service, instance, a.Tag)
}
