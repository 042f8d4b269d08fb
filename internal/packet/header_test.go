package packet_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"vitalmq/internal/packet"
)

// countingReader is an io.ByteReader that counts the bytes it hands out. After data it
// returns fill forever (or io.EOF when endless is false).
type countingReader struct {
	data    []byte
	fill    byte
	endless bool
	n       int
}

func (r *countingReader) ReadByte() (byte, error) {
	if r.n < len(r.data) {
		r.n++
		return r.data[r.n-1], nil
	}
	if !r.endless {
		return 0, io.EOF
	}
	r.n++
	return r.fill, nil
}

func TestReadHeaderStopsOnEndlessContinuationBytes(t *testing.T) { // T02
	for _, first := range []byte{0x10, 0x30, 0x82, 0xC0} {
		r := &countingReader{data: []byte{first}, fill: 0x80, endless: true}
		_, err := packet.ReadHeader(r)
		if !errors.Is(err, packet.ErrVarint) {
			t.Errorf("ReadHeader(%02x 80 80 ...) error %v, want ErrVarint", first, err)
		}
		if rc, _ := reasonOf(err); rc != packet.MalformedPacket {
			t.Errorf("ReadHeader(%02x 80 80 ...) reason %v, want %v", first, rc, packet.MalformedPacket)
		}
		if r.n > 5 {
			t.Errorf("ReadHeader(%02x 80 80 ...) consumed %d bytes, want at most 5", first, r.n)
		}
	}
}

func TestReadHeader(t *testing.T) {
	for _, c := range []struct {
		name     string
		wire     string
		want     packet.FixedHeader
		consumed int
		err      error
	}{
		{"zero length", "C0 00", packet.FixedHeader{Type: packet.PINGREQ}, 2, nil},
		{"one byte max", "30 7F", packet.FixedHeader{Type: packet.PUBLISH, Remaining: 127}, 2, nil},
		{"two bytes min", "30 80 01", packet.FixedHeader{Type: packet.PUBLISH, Remaining: 128}, 3, nil},
		{"two bytes max", "32 FF 7F", packet.FixedHeader{Type: packet.PUBLISH, Flags: 2, Remaining: 16383}, 3, nil},
		{"three bytes min", "30 80 80 01", packet.FixedHeader{Type: packet.PUBLISH, Remaining: 16384}, 4, nil},
		{"three bytes max T12", "30 FF FF 7F", packet.FixedHeader{Type: packet.PUBLISH, Remaining: 2097151}, 4, nil},
		{"four bytes min", "30 80 80 80 01", packet.FixedHeader{Type: packet.PUBLISH, Remaining: 2097152}, 5, nil},
		{"four bytes max T05", "10 FF FF FF 7F", packet.FixedHeader{Type: packet.CONNECT, Remaining: packet.MaxRemaining}, 5, nil},
		{"flags kept", "3D 00", packet.FixedHeader{Type: packet.PUBLISH, Flags: 0x0D}, 2, nil},
		{"T01 five bytes", "10 80 80 80 80 00", packet.FixedHeader{}, 5, packet.ErrVarint},
		{"T03 above maximum", "10 FF FF FF FF 7F", packet.FixedHeader{}, 5, packet.ErrVarint},
		{"empty stream", "", packet.FixedHeader{}, 0, io.EOF},
		{"T11 no length byte", "10", packet.FixedHeader{}, 1, io.ErrUnexpectedEOF},
		{"length cut after continuation", "10 80", packet.FixedHeader{}, 2, io.ErrUnexpectedEOF},
		{"length cut after three continuations", "10 80 80 80", packet.FixedHeader{}, 4, io.ErrUnexpectedEOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &countingReader{data: hx(c.wire)}
			got, err := packet.ReadHeader(r)
			if r.n != c.consumed {
				t.Errorf("ReadHeader(%s) consumed %d bytes, want %d", c.wire, r.n, c.consumed)
			}
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Errorf("ReadHeader(%s) error %v, want %v", c.wire, err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("ReadHeader(%s) = %+v, %v, want %+v", c.wire, got, err, c.want)
			}
			if size := got.Size(); size != c.consumed+got.Remaining {
				t.Errorf("FixedHeader%+v.Size() = %d, want %d", got, size, c.consumed+got.Remaining)
			}
		})
	}
}

// TestReadHeaderDoesNotReadBody: T06, a header announcing ~243 MB is returned after five
// bytes, before any of the body, so the caller can refuse it.
func TestReadHeaderDoesNotReadBody(t *testing.T) {
	for _, first := range hx("20 30 40 50 62 70 82 90 A2 B0 C0 D0 E0 F0") {
		r := &countingReader{data: []byte{first, 0x80, 0x80, 0x80, 0x74}, fill: 0x01, endless: true}
		h, err := packet.ReadHeader(r)
		if err != nil || h.Remaining != 0x74<<21 || r.n != 5 {
			t.Errorf("ReadHeader(%02x 80 80 80 74 01...) = %+v, %v after %d bytes, want Remaining %d after 5",
				first, h, err, r.n, 0x74<<21)
		}
	}
}

func TestValidateFixedHeader(t *testing.T) {
	wantFlags := map[packet.Type]byte{packet.PUBREL: 2, packet.SUBSCRIBE: 2, packet.UNSUBSCRIBE: 2}
	for _, version := range []byte{0, v3, v4, v5} {
		for typ := packet.Type(0); typ <= packet.AUTH; typ++ {
			for flags := byte(0); flags < 16; flags++ {
				h := packet.FixedHeader{Type: typ, Flags: flags}
				var ok bool
				switch {
				case typ == 0:
				case typ == packet.AUTH && (version == v3 || version == v4):
				case typ == packet.PUBLISH:
					qos := flags >> 1 & 3
					ok = qos != 3 && !(qos == 0 && flags&8 != 0)
				default:
					ok = flags == wantFlags[typ]
				}
				err := h.Validate(version)
				if ok != (err == nil) {
					t.Errorf("FixedHeader{%v, %#x}.Validate(%d) = %v, want ok=%v", typ, flags, version, err, ok)
				}
				if err != nil {
					if rc, _ := reasonOf(err); rc != packet.MalformedPacket {
						t.Errorf("FixedHeader{%v, %#x}.Validate(%d) reason %v, want %v", typ, flags, version, rc, packet.MalformedPacket)
					}
				}
			}
		}
	}
}

func TestTypeString(t *testing.T) {
	for typ, want := range map[packet.Type]string{0: "RESERVED", packet.CONNECT: "CONNECT", packet.PUBREL: "PUBREL",
		packet.AUTH: "AUTH", 16: "Type(16)"} {
		if got := typ.String(); got != want {
			t.Errorf("Type(%d).String() = %q, want %q", byte(typ), got, want)
		}
	}
}

// TestSentinelErrorText: ErrVarint and ErrProtocolName are built at package initialisation;
// their text should name the reason like every other error does.
func TestSentinelErrorText(t *testing.T) {
	var bad []string
	for _, err := range []error{packet.ErrVarint, packet.ErrProtocolName} {
		if !strings.HasPrefix(err.Error(), "mqtt: malformed packet:") {
			bad = append(bad, err.Error())
		}
	}
	if len(bad) > 0 {
		t.Errorf("error text %q, want prefix %q", bad, "mqtt: malformed packet:")
	}
}
