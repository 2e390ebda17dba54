package wire

import (
	"encoding/hex"
	"errors"
)

// TraceContext is a W3C trace context (the traceparent header) in binary
// form. The zero value means "no trace context".
type TraceContext struct {
	Version  uint8
	TraceID  [16]byte
	ParentID [8]byte
	Flags    uint8
}

// IsValid reports whether t carries a usable context: non-zero ids and a
// version other than the forbidden 0xff.
func (t TraceContext) IsValid() bool {
	return t.Version != 0xff && t.TraceID != [16]byte{} && t.ParentID != [8]byte{}
}

// Sampled reports whether the sampled flag is set.
func (t TraceContext) Sampled() bool { return t.Flags&0x01 != 0 }

// String returns the traceparent header value, or "" when t is not valid.
func (t TraceContext) String() string {
	if !t.IsValid() {
		return ""
	}
	return string(t.AppendText(make([]byte, 0, 55)))
}

// AppendText appends the traceparent header value ("00-<32 hex>-<16 hex>-<2 hex>").
func (t TraceContext) AppendText(b []byte) []byte {
	b = hex.AppendEncode(b, []byte{t.Version})
	b = append(b, '-')
	b = hex.AppendEncode(b, t.TraceID[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, t.ParentID[:])
	b = append(b, '-')
	return hex.AppendEncode(b, []byte{t.Flags})
}

var errTraceParent = errors.New(`wire: traceparent must look like "00-<32 hex>-<16 hex>-<2 hex>" with non-zero ids`)

// ParseTraceParent parses a traceparent header value. Versions above 00 are
// accepted as the W3C spec asks (their first four fields are read); 0xff is
// rejected.
func ParseTraceParent(s string) (TraceContext, error) {
	var t TraceContext
	if len(s) < 55 || (len(s) > 55 && (s[0:2] == "00" || s[55] != '-')) {
		return t, errTraceParent
	}
	if s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return t, errTraceParent
	}
	var v [1]byte
	if !decodeLowerHex(v[:], s[0:2]) || !decodeLowerHex(t.TraceID[:], s[3:35]) ||
		!decodeLowerHex(t.ParentID[:], s[36:52]) {
		return TraceContext{}, errTraceParent
	}
	t.Version = v[0]
	if !decodeLowerHex(v[:], s[53:55]) {
		return TraceContext{}, errTraceParent
	}
	t.Flags = v[0]
	if !t.IsValid() {
		return TraceContext{}, errTraceParent
	}
	return t, nil
}

// decodeLowerHex decodes lower-case hex (as W3C requires) without allocating.
func decodeLowerHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := nibble(s[2*i])
		lo, ok2 := nibble(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func nibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func (t TraceContext) appendBinary(b []byte) []byte {
	b = append(b, t.Version)
	b = append(b, t.TraceID[:]...)
	b = append(b, t.ParentID[:]...)
	return append(b, t.Flags)
}

func (t *TraceContext) decodeBinary(p []byte) bool {
	if len(p) != traceLen {
		return false
	}
	t.Version = p[0]
	copy(t.TraceID[:], p[1:17])
	copy(t.ParentID[:], p[17:25])
	t.Flags = p[25]
	return t.IsValid()
}
