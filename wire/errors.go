package wire

// DecodeError says why a packet was rejected by DecodeBeat or DecodeAck.
// It is a small integer so that returning one never allocates on the
// receive path.
type DecodeError uint8

// Decode errors. ErrOversized is counted apart from the rest, which receivers
// count as malformed.
const (
	ErrShort     DecodeError = iota + 1 // shorter than the fixed header, or than its own length fields say
	ErrOversized                        // longer than the largest valid packet
	ErrMagic                            // not a pulse packet
	ErrVersion                          // a protocol version this build does not speak
	ErrType                             // a beat where an ACK was expected, or the reverse
	ErrFlags                            // reserved flag bits or reserved bytes set
	ErrID                               // service or instance id empty, too long or not visible ASCII
	ErrStatus                           // status byte out of range
	ErrTrace                            // trace context invalid (zero ids, bad version)
	ErrTrailing                         // bytes after the tag
	ErrCode                             // ACK code out of range
	ErrRange                            // a numeric field out of its valid range
)

var decodeErrorText = [...]string{
	ErrShort:     "wire: packet truncated",
	ErrOversized: "wire: packet larger than the protocol allows",
	ErrMagic:     "wire: not a pulse packet (bad magic)",
	ErrVersion:   "wire: unsupported protocol version",
	ErrType:      "wire: unexpected packet type",
	ErrFlags:     "wire: reserved flag bits or bytes set",
	ErrID:        "wire: service or instance id empty, too long, or not visible ASCII",
	ErrStatus:    "wire: status out of range",
	ErrTrace:     "wire: invalid trace context",
	ErrTrailing:  "wire: trailing bytes after the tag",
	ErrCode:      "wire: ACK code out of range",
	ErrRange:     "wire: field out of range",
}

func (e DecodeError) Error() string {
	if int(e) < len(decodeErrorText) && decodeErrorText[e] != "" {
		return decodeErrorText[e]
	}
	return "wire: decode error"
}
