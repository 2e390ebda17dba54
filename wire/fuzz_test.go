package wire

import (
	"bytes"
	"testing"
)

// The fuzz targets check the decoder's promises on arbitrary input: no
// panic, no allocation, no read past the packet, and that whatever decodes
// re-encodes to the same bytes (so the decoder accepts exactly the encoder's
// language, and a tag can only be valid for what the sender meant).

func FuzzDecodeBeat(f *testing.F) {
	k, _ := NewKey(1, bytes.Repeat([]byte{0x5a}, 32))
	b := sampleBeat()
	p, _ := AppendBeat(nil, &b, k)
	f.Add(p)
	b.Trace = TraceContext{}
	p, _ = AppendBeat(nil, &b, k)
	f.Add(p)
	f.Add(p[:20])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// A copy with no spare capacity makes any read past len(data) fault.
		pkt := append([]byte(nil), data...)[:len(data):len(data)]
		var d Beat
		var err error
		if n := testing.AllocsPerRun(1, func() { err = DecodeBeat(pkt, &d) }); n != 0 && !raceEnabled {
			t.Fatalf("DecodeBeat allocated %v times", n)
		}
		if err != nil {
			return
		}
		if len(pkt) > MaxBeatSize || len(pkt) < MinBeatSize {
			t.Fatalf("accepted a %d-byte beat", len(pkt))
		}
		d.Verify(k)
		kd, _ := NewKey(d.KeyID, bytes.Repeat([]byte{0x5a}, 32))
		re, err := AppendBeat(nil, &d, kd)
		if err != nil {
			t.Fatalf("decoded beat does not re-encode: %v", err)
		}
		// Everything but the tag (and the sub-millisecond/microsecond parts
		// the wire cannot hold, which decoding already dropped) must match.
		if !bytes.Equal(re[:len(re)-TagLen], pkt[:len(pkt)-TagLen]) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", pkt, re)
		}
	})
}

func FuzzDecodeAck(f *testing.F) {
	k, _ := NewKey(1, bytes.Repeat([]byte{0x5a}, 32))
	a := Ack{Epoch: 1, Seq: 2, SentAt: 3, Directive: Directive{Interval: 4e9, Jitter: 5e8, Timeout: 1e9}}
	p, _ := AppendAck(nil, &a, k, []byte("svc"), []byte("inst"))
	f.Add(p)
	f.Add(p[:10])
	f.Fuzz(func(t *testing.T, data []byte) {
		pkt := append([]byte(nil), data...)[:len(data):len(data)]
		var d Ack
		var err error
		if n := testing.AllocsPerRun(1, func() { err = DecodeAck(pkt, &d) }); n != 0 && !raceEnabled {
			t.Fatalf("DecodeAck allocated %v times", n)
		}
		if err != nil {
			return
		}
		if len(pkt) != AckSize {
			t.Fatalf("accepted a %d-byte ACK", len(pkt))
		}
		d.Verify(k, []byte("svc"), []byte("inst"))
		kd, _ := NewKey(d.KeyID, bytes.Repeat([]byte{0x5a}, 32))
		re, _ := AppendAck(nil, &d, kd, []byte("svc"), []byte("inst"))
		if !bytes.Equal(re[:AckSize-TagLen], pkt[:AckSize-TagLen]) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", pkt, re)
		}
	})
}
