package packet

import (
	"errors"
	"fmt"
	"io"
)

// Type is the MQTT control packet type (the high nibble of the first byte).
type Type byte

// Control packet types, §2.1.2.
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
	AUTH        Type = 15
)

var typeNames = [...]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
	"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", byte(t))
}

// Protocol levels.
const (
	Version31  byte = 3
	Version311 byte = 4
	Version5   byte = 5
)

// MaxRemaining is the largest Remaining Length a four-byte Variable Byte Integer can carry.
const MaxRemaining = 268_435_455

// FixedHeader is the first part of every packet.
type FixedHeader struct {
	Type      Type
	Flags     byte // low nibble of the first byte
	Remaining int  // Remaining Length: the size of the body that follows
}

// Size is the size of the whole packet on the wire.
func (h FixedHeader) Size() int { return 1 + varintSize(h.Remaining) + h.Remaining }

// ErrVarint is returned for a Variable Byte Integer longer than four bytes or not in its
// shortest form ([MQTT-1.5.5-1]).
var ErrVarint error = &codeError{MalformedPacket, "variable byte integer longer than 4 bytes or not minimal"}

// codeError is a sentinel error wrapping a reason code, formatted when used (a package
// variable built with fmt.Errorf would be formatted before the reason names exist).
type codeError struct {
	rc  ReasonCode
	msg string
}

func (e *codeError) Error() string { return e.rc.Error() + ": " + e.msg }
func (e *codeError) Unwrap() error { return e.rc }

// ReadHeader reads a fixed header. It consumes at most five bytes: a continuation bit on the
// fourth length byte is an error ([MQTT-1.5.5-1]), so an endless stream of 0x80 stops here.
func ReadHeader(r io.ByteReader) (FixedHeader, error) {
	b, err := r.ReadByte()
	if err != nil {
		return FixedHeader{}, err
	}
	h := FixedHeader{Type: Type(b >> 4), Flags: b & 0x0F}
	mult := 1
	for i := 0; ; i++ {
		if i == 4 {
			return h, ErrVarint
		}
		c, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return h, err
		}
		if c == 0 && i > 0 {
			return h, ErrVarint // a trailing zero byte is not the shortest form [MQTT-1.5.5-1]
		}
		h.Remaining += int(c&0x7F) * mult
		if c&0x80 == 0 {
			return h, nil
		}
		mult <<= 7
	}
}

// Validate checks the packet type and its fixed-header flags for the protocol version
// (0 before CONNECT, when only CONNECT is acceptable). It is meant to run before the body is read.
func (h FixedHeader) Validate(version byte) error {
	switch h.Type {
	case 0:
		return fmt.Errorf("%w: reserved packet type 0", MalformedPacket) // 3.1.1 §2.2.1
	case AUTH:
		if version != 0 && version < Version5 {
			return fmt.Errorf("%w: reserved packet type 15", MalformedPacket) // 3.1.1 §2.2.1
		}
	case PUBLISH:
		qos := (h.Flags >> 1) & 3
		if qos == 3 {
			return fmt.Errorf("%w: publish qos 3", MalformedPacket) // [MQTT-3.3.1-4]
		}
		if qos == 0 && h.Flags&0x08 != 0 {
			return fmt.Errorf("%w: dup set on qos 0 publish", MalformedPacket) // [MQTT-3.3.1-2]
		}
		return nil
	}
	want := byte(0)
	if h.Type == PUBREL || h.Type == SUBSCRIBE || h.Type == UNSUBSCRIBE {
		want = 2 // [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1]
	}
	if h.Flags != want {
		return fmt.Errorf("%w: %v with flags %#x", MalformedPacket, h.Type, h.Flags) // [MQTT-2.1.3-1]
	}
	return nil
}

func varintSize(n int) int {
	switch {
	case n < 128:
		return 1
	case n < 16_384:
		return 2
	case n < 2_097_152:
		return 3
	default:
		return 4
	}
}

func appendVarint(dst []byte, n int) []byte {
	if n < 0 || n > MaxRemaining {
		panic("packet: variable byte integer out of range") // see appendString
	}
	for {
		b := byte(n & 0x7F)
		n >>= 7
		if n == 0 {
			return append(dst, b)
		}
		dst = append(dst, b|0x80)
	}
}

// appendHeader appends the first byte and the Remaining Length.
func appendHeader(dst []byte, t Type, flags byte, remaining int) []byte {
	return appendVarint(append(dst, byte(t)<<4|flags), remaining)
}
