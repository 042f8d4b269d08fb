package packet_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"vitalmq/internal/packet"
)

// fuzzVersions maps a fuzzed byte onto the protocol levels the codec supports.
var fuzzVersions = [...]byte{v3, v4, v5}

// seedFuzz adds (version, first header byte, body) for every table row whose type keep accepts.
func seedFuzz(f *testing.F, keep func(packet.Type) bool) {
	for _, c := range allCases() {
		wire := hx(c.wire)
		r := bytes.NewReader(wire)
		h, err := packet.ReadHeader(r)
		if err != nil || !keep(h.Type) {
			continue
		}
		vi := byte(0)
		for i, v := range fuzzVersions {
			if v == c.version {
				vi = byte(i)
			}
		}
		f.Add(vi, wire[0], wire[len(wire)-r.Len():])
	}
}

// requiredFlags is the fixed-header flag nibble of every type but PUBLISH.
func requiredFlags(t packet.Type) byte {
	if t == packet.PUBREL || t == packet.SUBSCRIBE || t == packet.UNSUBSCRIBE {
		return 2
	}
	return 0
}

// normalize applies to a decoded packet the documented lossy rules of the encoder, giving
// what a re-decode of its encoding must equal.
func normalize(v any, version byte) {
	switch p := v.(type) {
	case *packet.Connack:
		if p.Reason != packet.Success {
			p.SessionPresent = false // [MQTT-3.2.2-6]: the encoder clears it on refusal
		}
	case *packet.SubAck:
		if version < v5 {
			if p.Type == packet.UNSUBACK {
				p.Reasons = nil // 3.1.1 UNSUBACK has no payload (see the UNSUBACK bug row)
			}
			for i, r := range p.Reasons {
				if r.IsError() {
					p.Reasons[i] = packet.UnspecifiedError // [MQTT-3.9.3-2] 3.1.1: failure is 0x80
				}
			}
		}
	}
}

// checkRoundTrip decodes body; where that succeeds, encode(decode(body)) must decode again to
// an equal packet, and encoding that packet must give the same bytes (the canonical form is a
// fixed point).
func checkRoundTrip(t *testing.T, h packet.FixedHeader, body []byte, version byte) {
	t.Helper()
	v, err := decodeBody(h, body, version)
	if err != nil {
		if _, ok := reasonOf(err); !ok {
			t.Fatalf("decode %v %x: error %v carries no ReasonCode", h.Type, body, err)
		}
		return
	}
	enc := encode(nil, v, version)
	normalize(v, version)
	again, err := decodePacket(enc, version)
	if err != nil {
		t.Fatalf("decode %v %x = %+v; its encoding %x is rejected: %v", h.Type, body, v, enc, err)
	}
	if diff := cmp.Diff(v, again, cmpOpts...); diff != "" {
		t.Fatalf("decode %v %x: round trip through %x differs (-first +second):\n%s", h.Type, body, enc, diff)
	}
	if enc2 := encode(nil, again, version); !bytes.Equal(enc, enc2) {
		t.Fatalf("decode %v %x: encoding not stable: %x then %x", h.Type, body, enc, enc2)
	}
}

func FuzzReadHeader(f *testing.F) {
	for _, c := range allCases() {
		f.Add(hx(c.wire))
	}
	f.Add(hx("10 80 80 80 80 80 80 80"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &countingReader{data: data}
		h, err := packet.ReadHeader(r)
		if r.n > 5 {
			t.Fatalf("ReadHeader(%x) consumed %d bytes, want at most 5", data, r.n)
		}
		if err != nil {
			return
		}
		if h.Remaining < 0 || h.Remaining > packet.MaxRemaining {
			t.Fatalf("ReadHeader(%x) Remaining = %d", data, h.Remaining)
		}
		if hdr := h.Size() - h.Remaining; hdr > r.n || hdr < 2 {
			t.Fatalf("ReadHeader(%x) = %+v after %d bytes, but Size() implies a %d-byte header", data, h, r.n, hdr)
		}
		body := data[r.n:]
		if len(body) < h.Remaining {
			return
		}
		body = body[:h.Remaining]
		for _, version := range fuzzVersions {
			if h.Validate(version) == nil {
				checkRoundTrip(t, h, body, version)
			}
		}
	})
}

// fuzzTyped runs a typed decoder target: typeOf picks the packet type from the first byte.
func fuzzTyped(f *testing.F, keep func(packet.Type) bool, typeOf func(first byte) packet.Type) {
	seedFuzz(f, keep)
	f.Fuzz(func(t *testing.T, vi, first byte, body []byte) {
		version := fuzzVersions[int(vi)%len(fuzzVersions)]
		h := packet.FixedHeader{Type: typeOf(first), Remaining: len(body)}
		if h.Type == packet.PUBLISH {
			h.Flags = first & 0x0F
		} else {
			h.Flags = requiredFlags(h.Type)
		}
		if h.Validate(version) != nil {
			return
		}
		checkRoundTrip(t, h, body, version)
	})
}

func is(ts ...packet.Type) func(packet.Type) bool {
	return func(t packet.Type) bool { return slices.Contains(ts, t) }
}

func fixed(t packet.Type) func(byte) packet.Type { return func(byte) packet.Type { return t } }

func FuzzConnect(f *testing.F) {
	fuzzTyped(f, is(packet.CONNECT), fixed(packet.CONNECT))
}

func FuzzConnack(f *testing.F) {
	fuzzTyped(f, is(packet.CONNACK), fixed(packet.CONNACK))
}

func FuzzPublish(f *testing.F) {
	fuzzTyped(f, is(packet.PUBLISH), fixed(packet.PUBLISH))
}

func FuzzAck(f *testing.F) {
	fuzzTyped(f, is(packet.PUBACK, packet.PUBREC, packet.PUBREL, packet.PUBCOMP),
		func(first byte) packet.Type { return packet.PUBACK + packet.Type(first>>4)%4 })
}

func FuzzSubscribe(f *testing.F) {
	fuzzTyped(f, is(packet.SUBSCRIBE), fixed(packet.SUBSCRIBE))
}

func FuzzUnsubscribe(f *testing.F) {
	fuzzTyped(f, is(packet.UNSUBSCRIBE), fixed(packet.UNSUBSCRIBE))
}

func FuzzSubAck(f *testing.F) {
	fuzzTyped(f, is(packet.SUBACK, packet.UNSUBACK), func(first byte) packet.Type {
		if first&0x20 != 0 {
			return packet.UNSUBACK
		}
		return packet.SUBACK
	})
}

func FuzzDisconnect(f *testing.F) {
	fuzzTyped(f, is(packet.DISCONNECT, packet.AUTH), func(first byte) packet.Type {
		if first&0x10 != 0 {
			return packet.AUTH
		}
		return packet.DISCONNECT
	})
}
