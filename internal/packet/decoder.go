package packet

import (
	"fmt"
	"unicode/utf8"
)

// decoder reads primitives from a packet body. The first error sticks; later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) short(what string) {
	d.fail(fmt.Errorf("%w: %s truncated", MalformedPacket, what))
}

func (d *decoder) empty() bool { return len(d.b) == 0 }

func (d *decoder) byte(what string) byte {
	if d.err != nil || len(d.b) < 1 {
		d.short(what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uint16(what string) uint16 {
	if d.err != nil || len(d.b) < 2 {
		d.short(what)
		return 0
	}
	v := uint16(d.b[0])<<8 | uint16(d.b[1])
	d.b = d.b[2:]
	return v
}

func (d *decoder) uint32(what string) uint32 {
	if d.err != nil || len(d.b) < 4 {
		d.short(what)
		return 0
	}
	v := uint32(d.b[0])<<24 | uint32(d.b[1])<<16 | uint32(d.b[2])<<8 | uint32(d.b[3])
	d.b = d.b[4:]
	return v
}

// varint reads a Variable Byte Integer of at most four bytes ([MQTT-1.5.5-1]).
func (d *decoder) varint(what string) int {
	n, mult := 0, 1
	for i := 0; i < 4; i++ {
		c := d.byte(what)
		if d.err != nil {
			return 0
		}
		if c == 0 && i > 0 {
			d.fail(fmt.Errorf("%s: %w", what, ErrVarint)) // not the shortest form [MQTT-1.5.5-1]
			return 0
		}
		n += int(c&0x7F) * mult
		if c&0x80 == 0 {
			return n
		}
		mult <<= 7
	}
	d.fail(fmt.Errorf("%s: %w", what, ErrVarint))
	return 0
}

// binary returns a length-prefixed byte sequence, aliasing the body: callers copy what they keep.
func (d *decoder) binary(what string) []byte {
	n := int(d.uint16(what))
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.short(what)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// bytesCopy returns a copy of a length-prefixed byte sequence.
func (d *decoder) bytesCopy(what string) []byte {
	b := d.binary(what)
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// string reads a UTF-8 Encoded String and checks it ([MQTT-1.5.4-1], [MQTT-1.5.4-2]).
func (d *decoder) string(what string) string {
	b := d.binary(what)
	if d.err != nil {
		return ""
	}
	if err := CheckUTF8(b); err != nil {
		d.fail(fmt.Errorf("%s: %w", what, err))
		return ""
	}
	return string(b)
}

// CheckUTF8 checks an MQTT UTF-8 Encoded String: well-formed UTF-8 with no surrogates
// ([MQTT-1.5.4-1]) and no U+0000 ([MQTT-1.5.4-2]).
func CheckUTF8(b []byte) error {
	for i := 0; i < len(b); i++ {
		if b[i] == 0 {
			return fmt.Errorf("%w: string contains U+0000", MalformedPacket)
		}
		if b[i] >= utf8.RuneSelf {
			if !utf8.Valid(b[i:]) {
				return fmt.Errorf("%w: string is not valid UTF-8", MalformedPacket)
			}
			for _, c := range b[i:] {
				if c == 0 {
					return fmt.Errorf("%w: string contains U+0000", MalformedPacket)
				}
			}
			return nil
		}
	}
	return nil
}

// Primitive encoders.

func appendUint16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendUint32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// appendString and appendBinary refuse a value longer than a two-byte length can say:
// truncating the length would let the rest be read as another packet (packet injection).
// Callers validate lengths first (the broker caps topics, ids and strings), so this panic
// is a programming error, contained by the connection's recover.
func appendString(dst []byte, s string) []byte {
	if len(s) > 65535 {
		panic("packet: string longer than 65535 bytes")
	}
	return append(appendUint16(dst, uint16(len(s))), s...)
}

func appendBinary(dst []byte, b []byte) []byte {
	if len(b) > 65535 {
		panic("packet: binary data longer than 65535 bytes")
	}
	return append(appendUint16(dst, uint16(len(b))), b...)
}
