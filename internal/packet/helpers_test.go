package packet_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"vitalmq/internal/packet"
)

// hx decodes a hex string written with optional spaces and newlines ("10 0E 00 04").
func hx(s string) []byte {
	s = strings.Join(strings.Fields(s), "")
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(fmt.Sprintf("bad hex in test table: %q: %v", s, err))
	}
	return b
}

// spaced formats b as the tables write it: upper-case hex pairs separated by spaces.
func spaced(b []byte) string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%02X", c)
	}
	return sb.String()
}

// pr returns p with the given properties marked present; User and SubscriptionIDs are marked
// present when non-empty, as the decoder does.
func pr(p packet.Properties, ids ...packet.PropID) packet.Properties {
	for _, id := range ids {
		p.Set(id)
	}
	if len(p.User) > 0 {
		p.Set(packet.PropUserProperty)
	}
	if len(p.SubscriptionIDs) > 0 {
		p.Set(packet.PropSubscriptionID)
	}
	return p
}

// user is a one-pair user property list.
func user(k, v string) []packet.UserProperty { return []packet.UserProperty{{Key: k, Value: v}} }

// pingPacket stands for PINGREQ and PINGRESP, which the codec has no struct for.
type pingPacket struct{ Type packet.Type }

// errTrailingPacket means the test input holds more than one packet: a broken table row.
var errTrailingPacket = errors.New("test input continues after the packet")

// cmpOpts compares decoded packets: a nil and an empty slice are the same on the wire.
var cmpOpts = []cmp.Option{cmpopts.EquateEmpty()}

// decodeBody runs the typed decoder for h.Type. The returned value is the (possibly partly
// filled) packet even when err != nil, so callers can inspect e.g. Connect.Version.
func decodeBody(h packet.FixedHeader, body []byte, version byte) (any, error) {
	switch h.Type {
	case packet.CONNECT:
		var c packet.Connect
		return &c, packet.DecodeConnect(&c, body)
	case packet.CONNACK:
		var c packet.Connack
		return &c, packet.DecodeConnack(&c, body, version)
	case packet.PUBLISH:
		var p packet.Publish
		return &p, packet.DecodePublish(&p, h.Flags, body, version)
	case packet.PUBACK, packet.PUBREC, packet.PUBREL, packet.PUBCOMP:
		var a packet.Ack
		return &a, packet.DecodeAck(&a, h.Type, body, version)
	case packet.SUBSCRIBE:
		var s packet.Subscribe
		return &s, packet.DecodeSubscribe(&s, body, version)
	case packet.SUBACK, packet.UNSUBACK:
		var s packet.SubAck
		return &s, packet.DecodeSubAck(&s, h.Type, body, version)
	case packet.UNSUBSCRIBE:
		var u packet.Unsubscribe
		return &u, packet.DecodeUnsubscribe(&u, body, version)
	case packet.PINGREQ, packet.PINGRESP:
		p := &pingPacket{Type: h.Type}
		if len(body) != 0 {
			return p, fmt.Errorf("%w: %v with a body", packet.MalformedPacket, h.Type)
		}
		return p, nil
	case packet.DISCONNECT, packet.AUTH:
		var d packet.Disconnect
		return &d, packet.DecodeDisconnect(&d, h.Type, body, version)
	}
	return nil, fmt.Errorf("test: no decoder for %v", h.Type)
}

// splitPacket reads and validates the fixed header of wire and returns it with the body.
// A body shorter than the Remaining Length is io.ErrUnexpectedEOF, as a reader would see it.
func splitPacket(wire []byte, version byte) (packet.FixedHeader, []byte, error) {
	r := bytes.NewReader(wire)
	h, err := packet.ReadHeader(r)
	if err != nil {
		return h, nil, err
	}
	if err := h.Validate(version); err != nil {
		return h, nil, err
	}
	body := wire[len(wire)-r.Len():]
	switch {
	case len(body) < h.Remaining:
		return h, nil, io.ErrUnexpectedEOF
	case len(body) > h.Remaining:
		return h, nil, errTrailingPacket
	}
	return h, body, nil
}

// decodePacket decodes one whole packet (fixed header included) the way the broker does:
// ReadHeader, FixedHeader.Validate(version), then the typed decoder on the body.
func decodePacket(wire []byte, version byte) (any, error) {
	h, body, err := splitPacket(wire, version)
	if err != nil {
		return nil, err
	}
	return decodeBody(h, body, version)
}

// encode appends the encoding of a decoded packet to dst.
func encode(dst []byte, v any, version byte) []byte {
	switch p := v.(type) {
	case *packet.Connect:
		return packet.AppendConnect(dst, p)
	case *packet.Connack:
		return packet.AppendConnack(dst, p, version)
	case *packet.Publish:
		return packet.AppendPublish(dst, p, version)
	case *packet.Ack:
		return packet.AppendAck(dst, p, version)
	case *packet.Subscribe:
		return packet.AppendSubscribe(dst, p, version)
	case *packet.SubAck:
		return packet.AppendSubAck(dst, p, version)
	case *packet.Unsubscribe:
		return packet.AppendUnsubscribe(dst, p, version)
	case *pingPacket:
		return packet.AppendPing(dst, p.Type)
	case *packet.Disconnect:
		return packet.AppendDisconnect(dst, p, version)
	}
	panic(fmt.Sprintf("test: no encoder for %T", v))
}

// reasonOf returns the ReasonCode carried by err, if any.
func reasonOf(err error) (packet.ReasonCode, bool) {
	var rc packet.ReasonCode
	ok := errors.As(err, &rc)
	return rc, ok
}
