package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/status"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testKey(t testing.TB, id uint16, fill byte) *Key {
	t.Helper()
	k, err := NewKey(id, bytes.Repeat([]byte{fill}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sampleBeat() Beat {
	return Beat{
		Attempt:  2,
		Status:   status.Degraded,
		Reason:   ReasonDependency,
		Interval: 10 * time.Second,
		Epoch:    1767225600000000000,
		Seq:      42,
		SentAt:   123456789 * time.Nanosecond,
		RTT:      1500 * time.Microsecond,
		Service:  []byte("checkout"),
		Instance: []byte("checkout-7f9c-2"),
		Trace: TraceContext{
			TraceID:  [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
			ParentID: [8]byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
			Flags:    1,
		},
	}
}

func TestBeatRoundTrip(t *testing.T) {
	k := testKey(t, 7, 0xab)
	in := sampleBeat()
	p, err := AppendBeat(nil, &in, k)
	if err != nil {
		t.Fatal(err)
	}
	if want := beatFixed + len(in.Service) + len(in.Instance) + traceLen + TagLen; len(p) != want {
		t.Fatalf("len %d, want %d", len(p), want)
	}
	var out Beat
	if err := DecodeBeat(p, &out); err != nil {
		t.Fatal(err)
	}
	if !out.Verify(k) {
		t.Fatal("tag does not verify with the signing key")
	}
	if out.KeyID != 7 || out.Attempt != in.Attempt || out.Status != in.Status || out.Reason != in.Reason ||
		out.Interval != in.Interval || out.Epoch != in.Epoch || out.Seq != in.Seq || out.SentAt != in.SentAt ||
		out.RTT != in.RTT || string(out.Service) != "checkout" || string(out.Instance) != "checkout-7f9c-2" ||
		out.Trace != in.Trace {
		t.Fatalf("round trip mismatch:\n in %+v\nout %+v", in, out)
	}
	// Without a trace context the flag is clear and the packet shorter.
	in.Trace = TraceContext{}
	p2, _ := AppendBeat(nil, &in, k)
	if len(p2) != len(p)-traceLen || p2[4] != 0 {
		t.Fatalf("no-trace beat: len %d flags %x", len(p2), p2[4])
	}
	if err := DecodeBeat(p2, &out); err != nil || out.Trace.IsValid() || !out.Verify(k) {
		t.Fatalf("no-trace decode: %v %+v", err, out.Trace)
	}
}

func TestBeatAuthentication(t *testing.T) {
	k := testKey(t, 1, 0x11)
	b := sampleBeat()
	p, _ := AppendBeat(nil, &b, k)
	var d Beat

	// Forged tag: one bit flipped in the tag.
	forged := append([]byte(nil), p...)
	forged[len(forged)-1] ^= 1
	if err := DecodeBeat(forged, &d); err != nil {
		t.Fatal(err)
	}
	if d.Verify(k) {
		t.Fatal("forged tag verified")
	}
	// Tampered body: the tag no longer matches.
	tampered := append([]byte(nil), p...)
	tampered[6] = byte(status.Healthy)
	if err := DecodeBeat(tampered, &d); err != nil || d.Verify(k) {
		t.Fatalf("tampered status verified (err %v)", err)
	}
	// Same id, other secret.
	if err := DecodeBeat(p, &d); err != nil || d.Verify(testKey(t, 1, 0x22)) {
		t.Fatal("beat verified with a different secret")
	}
	// Right secret but another key id: Verify refuses before computing.
	if d.Verify(testKey(t, 2, 0x11)) {
		t.Fatal("beat verified with a key of another id")
	}
	if d.Verify(nil) {
		t.Fatal("beat verified with nil key")
	}
}

func TestDecodeBeatErrors(t *testing.T) {
	k := testKey(t, 1, 0x33)
	b := sampleBeat()
	good, _ := AppendBeat(nil, &b, k)
	mut := func(f func(p []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := []struct {
		name string
		p    []byte
		want DecodeError
	}{
		{"empty", nil, ErrShort},
		{"three bytes", good[:3], ErrShort},
		{"header only", good[:20], ErrShort},
		{"truncated tag", good[:len(good)-1], ErrShort},
		{"truncated ids", good[:MinBeatSize], ErrShort},
		{"oversized", make([]byte, MaxBeatSize+1), ErrOversized},
		{"trailing", append(append([]byte(nil), good...), 0), ErrTrailing},
		{"magic", mut(func(p []byte) []byte { p[0] = 'X'; return p }), ErrMagic},
		{"version", mut(func(p []byte) []byte { p[2] = 2; return p }), ErrVersion},
		{"type", mut(func(p []byte) []byte { p[3] = TypeAck; return p }), ErrType},
		{"flags", mut(func(p []byte) []byte { p[4] |= 0x80; return p }), ErrFlags},
		{"reserved", mut(func(p []byte) []byte { p[7] = 1; return p }), ErrFlags},
		{"status", mut(func(p []byte) []byte { p[6] = 9; return p }), ErrStatus},
		{"empty service", mut(func(p []byte) []byte { p[44] = 0; return p }), ErrTrailing},
		{"space in id", mut(func(p []byte) []byte { p[beatFixed] = ' '; return p }), ErrID},
		{"control in id", mut(func(p []byte) []byte { p[beatFixed+9] = 0x01; return p }), ErrID},
		{"zero trace id", mut(func(p []byte) []byte {
			off := beatFixed + len(b.Service) + len(b.Instance)
			clear(p[off+1 : off+17])
			return p
		}), ErrTrace},
		{"sent-at sign bit", mut(func(p []byte) []byte { p[32] = 0x80; return p }), ErrRange},
	}
	for _, c := range cases {
		var d Beat
		err := DecodeBeat(c.p, &d)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
}

func TestAppendBeatRejectsBadInput(t *testing.T) {
	k := testKey(t, 1, 0x44)
	b := sampleBeat()
	b.Service = []byte("has space")
	if _, err := AppendBeat(nil, &b, k); !errors.Is(err, ErrID) {
		t.Fatalf("bad id: %v", err)
	}
	b = sampleBeat()
	b.Instance = bytes.Repeat([]byte("x"), MaxIDLen+1)
	if _, err := AppendBeat(nil, &b, k); !errors.Is(err, ErrID) {
		t.Fatalf("long id: %v", err)
	}
	b = sampleBeat()
	b.Status = 9
	if _, err := AppendBeat(nil, &b, k); !errors.Is(err, ErrStatus) {
		t.Fatalf("bad status: %v", err)
	}
	if _, err := AppendBeat(nil, &b, nil); !errors.Is(err, ErrNoKey) {
		t.Fatalf("nil key: %v", err)
	}
	// The largest legal beat is exactly MaxBeatSize and decodes.
	b = sampleBeat()
	b.Service = bytes.Repeat([]byte("s"), MaxIDLen)
	b.Instance = bytes.Repeat([]byte("i"), MaxIDLen)
	p, err := AppendBeat(nil, &b, k)
	if err != nil || len(p) != MaxBeatSize {
		t.Fatalf("max beat: len %d err %v", len(p), err)
	}
	var d Beat
	if err := DecodeBeat(p, &d); err != nil || !d.Verify(k) {
		t.Fatalf("max beat decode: %v", err)
	}
}

func TestAckRoundTripAndBinding(t *testing.T) {
	k := testKey(t, 3, 0x55)
	in := Ack{Code: AckDuplicate, Epoch: 9, Seq: 1 << 40, SentAt: 5 * time.Second,
		Directive: Directive{Interval: 10 * time.Second, Jitter: time.Second, Timeout: 2 * time.Second}}
	svc, inst := []byte("api"), []byte("api-1")
	p, err := AppendAck(nil, &in, k, svc, inst)
	if err != nil || len(p) != AckSize {
		t.Fatalf("len %d err %v", len(p), err)
	}
	var out Ack
	if err := DecodeAck(p, &out); err != nil {
		t.Fatal(err)
	}
	if out.Code != in.Code || out.KeyID != 3 || out.Epoch != in.Epoch || out.Seq != in.Seq ||
		out.SentAt != in.SentAt || out.Directive != in.Directive {
		t.Fatalf("ack mismatch: %+v vs %+v", out, in)
	}
	if !out.Verify(k, svc, inst) {
		t.Fatal("ack does not verify")
	}
	// Bound to the instance: the same ACK does not verify for another one.
	if out.Verify(k, svc, []byte("api-2")) || out.Verify(k, []byte("ap"), []byte("iapi-1")) {
		t.Fatal("ack verified for another instance")
	}
	bad := append([]byte(nil), p...)
	bad[len(bad)-3] ^= 0x40
	if err := DecodeAck(bad, &out); err != nil || out.Verify(k, svc, inst) {
		t.Fatal("forged ack verified")
	}
	for name, c := range map[string]struct {
		p    []byte
		want DecodeError
	}{
		"short":     {p[:AckSize-1], ErrShort},
		"oversized": {append(append([]byte(nil), p...), 0), ErrOversized},
		"type":      {func() []byte { q := append([]byte(nil), p...); q[3] = TypeBeat; return q }(), ErrType},
		"code":      {func() []byte { q := append([]byte(nil), p...); q[5] = 7; return q }(), ErrCode},
		"reserved":  {func() []byte { q := append([]byte(nil), p...); q[8] = 1; return q }(), ErrFlags},
	} {
		if err := DecodeAck(c.p, &out); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

func TestWindow(t *testing.T) {
	var w Window
	step := func(epoch, seq uint64, want Verdict) {
		t.Helper()
		got := w.Check(epoch, seq)
		if got != want {
			t.Fatalf("Check(%d,%d) = %v, want %v", epoch, seq, got, want)
		}
		if got == Fresh {
			w.Accept(epoch, seq)
		}
	}
	step(5, 100, Fresh)
	step(5, 100, Duplicate)
	step(5, 101, Fresh)
	step(5, 99, Fresh) // late but inside the window
	step(5, 99, Duplicate)
	step(5, 101+WindowSize-1, Fresh)
	step(5, 101, Duplicate)                 // exactly the oldest slot still remembered
	step(5, 100, Replay)                    // just fell out of the window
	step(5, 101+WindowSize-1+1000, Fresh)   // a jump wider than the window
	step(5, 101+WindowSize-1+1000-1, Fresh) // inside the new window, not seen
	step(4, 1<<50, Replay)                  // an older epoch never comes back
	step(6, 1, Fresh)                       // sender restarted: new epoch resets
	step(6, 1, Duplicate)
	step(5, 1<<60, Replay)
	if w.Epoch() != 6 || w.Top() != 1 {
		t.Fatalf("epoch %d top %d", w.Epoch(), w.Top())
	}
	// Check alone never records.
	var w2 Window
	w2.Check(1, 1)
	if w2.Check(1, 1) != Fresh {
		t.Fatal("Check recorded")
	}
}

func TestTraceParent(t *testing.T) {
	const s = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tc, err := ParseTraceParent(s)
	if err != nil {
		t.Fatal(err)
	}
	if tc.String() != s || !tc.Sampled() || tc != sampleBeat().Trace {
		t.Fatalf("parse/format: %q %+v", tc.String(), tc)
	}
	for _, bad := range []string{
		"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
	} {
		if _, err := ParseTraceParent(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	// A future version may append fields.
	if _, err := ParseTraceParent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"); err != nil {
		t.Errorf("future version: %v", err)
	}
}

func TestKeys(t *testing.T) {
	if _, err := NewKey(1, make([]byte, MinKeyLen-1)); err == nil {
		t.Fatal("short secret accepted")
	}
	keys, err := ParseKeyFile([]byte("# current first\n2: 00112233445566778899aabbccddeeff\n\n1:ffeeddccbbaa99887766554433221100\n"))
	if err != nil || len(keys) != 2 || keys[0].ID() != 2 || keys[1].ID() != 1 {
		t.Fatalf("key file: %v %v", keys, err)
	}
	if strings.Contains(keys[0].String(), "0011") {
		t.Fatal("String leaks the secret")
	}
	for _, bad := range []string{"", "# only a comment", "1-0011", "x:00112233445566778899aabbccddeeff", "1:zz", "1:00112233445566778899aabbccddeeff\n1:00112233445566778899aabbccddeeff"} {
		if _, err := ParseKeyFile([]byte(bad)); err == nil {
			t.Errorf("accepted key file %q", bad)
		}
	}
	ring, err := NewKeyring(map[string][]*Key{"api": keys})
	if err != nil {
		t.Fatal(err)
	}
	if ring.Lookup([]byte("api"), 1) != keys[1] || ring.Lookup([]byte("api"), 3) != nil || ring.Lookup([]byte("web"), 1) != nil {
		t.Fatal("keyring lookup")
	}
	if _, err := NewKeyring(map[string][]*Key{"api": {keys[0], keys[0]}, "bad id": keys}); err == nil {
		t.Fatal("keyring accepted duplicate ids and a bad service id")
	}
}

// TestNoAllocs guards the receive path's promise: decoding, verifying and
// answering a beat allocate nothing.
func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items on purpose); run without -race")
	}
	k := testKey(t, 1, 0x66)
	ring, _ := NewKeyring(map[string][]*Key{"checkout": {k}})
	b := sampleBeat()
	p, _ := AppendBeat(nil, &b, k)
	ackBuf := make([]byte, 0, AckSize)
	var d Beat
	var w Window
	allocs := testing.AllocsPerRun(1000, func() {
		if err := DecodeBeat(p, &d); err != nil {
			panic(err)
		}
		key := ring.Lookup(d.Service, d.KeyID)
		if !d.Verify(key) {
			panic("verify")
		}
		if w.Check(d.Epoch, d.Seq) == Fresh {
			w.Accept(d.Epoch, d.Seq)
		}
		a := Ack{Epoch: d.Epoch, Seq: d.Seq, SentAt: d.SentAt}
		ackBuf, _ = AppendAck(ackBuf[:0], &a, key, d.Service, d.Instance)
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per beat, want 0", allocs)
	}
	// Errors on the path do not allocate either.
	allocs = testing.AllocsPerRun(1000, func() {
		if DecodeBeat(p[:10], &d) == nil {
			panic("no error")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per rejected packet", allocs)
	}
}

// TestProtocolDocExample keeps the example in docs/protocol.md honest: the
// hex dumps there must be what this encoder produces for the documented
// inputs.
func TestProtocolDocExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatalf("read protocol doc: %v", err)
	}
	secret, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	k, _ := NewKey(1, secret)
	b := Beat{
		Status: status.Healthy, Interval: 10 * time.Second, Epoch: 0x188a0f2c9e4b0000, Seq: 7,
		SentAt: 5 * time.Second, RTT: 1200 * time.Microsecond,
		Service: []byte("api"), Instance: []byte("api-1"),
		Trace: sampleBeat().Trace,
	}
	p, _ := AppendBeat(nil, &b, k)
	a := Ack{Epoch: b.Epoch, Seq: 7, SentAt: b.SentAt, Directive: Directive{Interval: 5 * time.Second, Jitter: 500 * time.Millisecond}}
	q, _ := AppendAck(nil, &a, k, b.Service, b.Instance)
	for name, pkt := range map[string][]byte{"beat": p, "ack": q} {
		dump := hexDump(pkt)
		if !strings.Contains(string(doc), dump) {
			t.Errorf("docs/protocol.md lacks the %s example as encoded now; it should contain:\n%s", name, dump)
		}
	}
}

// hexDump formats 16 bytes per line: "0000  50 42 01 01 ...".
func hexDump(p []byte) string {
	var sb strings.Builder
	for off := 0; off < len(p); off += 16 {
		end := min(off+16, len(p))
		sb.WriteString(hex.EncodeToString([]byte{byte(off >> 8), byte(off)}))
		sb.WriteString(" ")
		for _, c := range p[off:end] {
			sb.WriteString(" ")
			sb.WriteString(hex.EncodeToString([]byte{c}))
		}
		sb.WriteString("\n")
	}
	return sb.String()
}
