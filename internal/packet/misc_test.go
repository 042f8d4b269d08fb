package packet_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"vitalmq/internal/packet"
)

func TestCheckUTF8(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"empty", "", true},
		{"ascii", "72 70 6D 2F 70 31 2F 68 72", true},
		{"two-byte", "C3 A9", true},
		{"four-byte U+2A6D4", "F0 AA 9B 94", true},
		{"BOM U+FEFF kept", "EF BB BF 61", true},
		{"noncharacter U+FFFF allowed", "EF BF BF", true},
		{"U+0000 first", "00 61", false},
		{"U+0000 last", "61 00", false},
		{"U+0000 after multibyte", "C3 A9 00", false},
		{"surrogate ED A0 80", "ED A0 80", false},
		{"low surrogate ED BF BF", "ED BF BF", false},
		{"overlong C0 AF", "C0 AF", false},
		{"overlong E0 80 AF", "E0 80 AF", false},
		{"truncated E2 82", "61 E2 82", false},
		{"lone continuation 80", "80", false},
		{"above U+10FFFF F4 90 80 80", "F4 90 80 80", false},
		{"FF byte", "61 FF", false},
	} {
		err := packet.CheckUTF8(hx(c.in))
		if (err == nil) != c.ok {
			t.Errorf("CheckUTF8(%s) [%s] = %v, want ok=%v", c.in, c.name, err, c.ok)
		}
		if err != nil {
			if rc, _ := reasonOf(err); rc != packet.MalformedPacket {
				t.Errorf("CheckUTF8(%s) reason %v, want %v", c.in, rc, packet.MalformedPacket)
			}
		}
	}
}

func TestReasonCode(t *testing.T) {
	for _, c := range []struct {
		rc      packet.ReasonCode
		text    string
		isError bool
		code311 byte
	}{
		{packet.Success, "mqtt: success", false, 0},
		{packet.GrantedQoS2, "mqtt: granted qos 2", false, 5},
		{packet.UnspecifiedError, "mqtt: unspecified error", true, 5},
		{packet.MalformedPacket, "mqtt: malformed packet", true, 5},
		{packet.UnsupportedProtocolVersion, "mqtt: unsupported protocol version", true, 1},
		{packet.ClientIdentifierNotValid, "mqtt: client identifier not valid", true, 2},
		{packet.ServerUnavailable, "mqtt: server unavailable", true, 3},
		{packet.ServerBusy, "mqtt: server busy", true, 3},
		{packet.QuotaExceeded, "mqtt: quota exceeded", true, 3},
		{packet.ConnectionRateExceeded, "mqtt: connection rate exceeded", true, 3},
		{packet.BadUserNameOrPassword, "mqtt: bad user name or password", true, 4},
		{packet.BadAuthenticationMethod, "mqtt: bad authentication method", true, 4},
		{packet.NotAuthorized, "mqtt: not authorized", true, 5},
		{packet.Banned, "mqtt: banned", true, 5},
		{packet.WildcardSubsNotSupported, "mqtt: wildcard subscriptions not supported", true, 5},
		{packet.ReasonCode(0x7F), "mqtt: reason 0x7f", false, 5},
		{packet.ReasonCode(0xFF), "mqtt: reason 0xff", true, 5},
	} {
		if got := c.rc.Error(); got != c.text {
			t.Errorf("ReasonCode(%#x).Error() = %q, want %q", byte(c.rc), got, c.text)
		}
		if got := c.rc.IsError(); got != c.isError {
			t.Errorf("ReasonCode(%#x).IsError() = %v, want %v", byte(c.rc), got, c.isError)
		}
		if got := c.rc.ConnackCode311(); got != c.code311 {
			t.Errorf("ReasonCode(%#x).ConnackCode311() = %d, want %d", byte(c.rc), got, c.code311)
		}
	}
}

// TestConnackEncoding covers the encoder rules that have no decode row: Session Present is
// cleared on refusal ([MQTT-3.2.2-6]) and 5.0 codes map onto 3.1.1 return codes.
func TestConnackEncoding(t *testing.T) {
	for _, c := range []struct {
		name    string
		in      packet.Connack
		version byte
		want    string
	}{
		{"v311 refused clears session present", packet.Connack{SessionPresent: true, Reason: packet.NotAuthorized}, v4, "20 02 00 05"},
		{"v5 refused clears session present", packet.Connack{SessionPresent: true, Reason: packet.Banned}, v5, "20 03 00 8A 00"},
		{"v311 server busy is 3", packet.Connack{Reason: packet.ServerBusy}, v4, "20 02 00 03"},
		{"v311 bad authentication method is 4", packet.Connack{Reason: packet.BadAuthenticationMethod}, v4, "20 02 00 04"},
		{"v311 banned is 5", packet.Connack{Reason: packet.Banned}, v4, "20 02 00 05"},
		{"v311 drops properties", packet.Connack{Props: pr(packet.Properties{ReceiveMaximum: 5}, pRMax)}, v4, "20 02 00 00"},
	} {
		if got := packet.AppendConnack(nil, &c.in, c.version); !bytes.Equal(got, hx(c.want)) {
			t.Errorf("%s: AppendConnack(%+v, %d) = %s, want %s", c.name, c.in, c.version, spaced(got), c.want)
		}
	}
}

func TestSubAckEncoding311MapsFailures(t *testing.T) {
	s := packet.SubAck{Type: packet.SUBACK, PacketID: 8, Reasons: []packet.ReasonCode{packet.GrantedQoS1, packet.NotAuthorized, packet.TopicFilterInvalid}}
	if got, want := packet.AppendSubAck(nil, &s, v4), hx("90 05 00 08 01 80 80"); !bytes.Equal(got, want) { // T51
		t.Errorf("AppendSubAck(%+v, 4) = %s, want %s", s, spaced(got), spaced(want))
	}
	u := packet.SubAck{Type: packet.UNSUBACK, PacketID: 8, Reasons: []packet.ReasonCode{packet.Success}}
	if got, want := packet.AppendSubAck(nil, &u, v4), hx("B0 02 00 08"); !bytes.Equal(got, want) {
		t.Errorf("AppendSubAck(%+v, 4) = %s, want %s", u, spaced(got), spaced(want))
	}
}

func TestDisconnectEncodingDefaultsToDisconnect(t *testing.T) {
	d := packet.Disconnect{Reason: packet.SessionTakenOver}
	if got, want := packet.AppendDisconnect(nil, &d, v5), hx("E0 01 8E"); !bytes.Equal(got, want) {
		t.Errorf("AppendDisconnect(%+v, 5) = %s, want %s", d, spaced(got), spaced(want))
	}
	if got, want := packet.AppendDisconnect(nil, &d, v4), hx("E0 00"); !bytes.Equal(got, want) {
		t.Errorf("AppendDisconnect(%+v, 4) = %s, want %s", d, spaced(got), spaced(want))
	}
}

func TestPublishSizeMatchesEncoding(t *testing.T) {
	for _, c := range validCases() {
		p, ok := c.want.(*packet.Publish)
		if !ok {
			continue
		}
		n, _ := packet.PublishSize(p, c.version)
		h, _, err := splitPacket(hx(c.wire), c.version)
		if err != nil || h.Remaining != n {
			t.Errorf("%s: PublishSize = %d, want %d (%v)", c.name, n, h.Remaining, err)
		}
	}
}

// TestDecodedPacketOwnsItsBytes: the caller may reuse the body buffer, so nothing decoded may
// alias it.
func TestDecodedPacketOwnsItsBytes(t *testing.T) {
	for _, c := range validCases() {
		t.Run(c.name, func(t *testing.T) {
			h, body, err := splitPacket(hx(c.wire), c.version)
			if err != nil {
				t.Fatal(err)
			}
			buf := append([]byte(nil), body...)
			got, err := decodeBody(h, buf, c.version)
			if err != nil {
				t.Fatal(err)
			}
			for i := range buf {
				buf[i] ^= 0xFF
			}
			if diff := cmp.Diff(c.want, got, cmpOpts...); diff != "" {
				t.Errorf("decoded packet changed when the body buffer was overwritten (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeIntoReusedStruct decodes every valid row into a struct that already holds the
// fullest packet of the same type (every property, a will, several filters): the result must
// equal a fresh decode. Brokers decode into one struct per connection.
func TestDecodeIntoReusedStruct(t *testing.T) {
	dirty := map[packet.Type]string{
		packet.CONNECT: "connect_v5_will_props", packet.CONNACK: "connack_v5_all_props",
		packet.PUBLISH: "publish_v5_qos1_all_props", packet.PUBACK: "pubrec_v5_reason_string",
		packet.PUBREC: "pubrec_v5_reason_string", packet.PUBREL: "pubrec_v5_reason_string",
		packet.PUBCOMP: "pubrec_v5_reason_string", packet.SUBSCRIBE: "subscribe_v5_all_options",
		packet.SUBACK: "suback_v5_reason_string", packet.UNSUBACK: "suback_v5_reason_string",
		packet.UNSUBSCRIBE: "unsubscribe_v5_user_property", packet.DISCONNECT: "disconnect_v5_props",
		packet.AUTH: "auth_v5_reauthenticate_reason_string",
	}
	rows := map[string]codecCase{}
	for _, c := range validCases() {
		rows[c.name] = c
	}
	// decodeInto decodes c into the struct *v points to (allocating it on first use).
	decodeInto := func(v any, c codecCase) error {
		h, body, err := splitPacket(hx(c.wire), c.version)
		if err != nil {
			return err
		}
		switch p := v.(type) {
		case *packet.Connect:
			return packet.DecodeConnect(p, body)
		case *packet.Connack:
			return packet.DecodeConnack(p, body, c.version)
		case *packet.Publish:
			return packet.DecodePublish(p, h.Flags, body, c.version)
		case *packet.Ack:
			return packet.DecodeAck(p, h.Type, body, c.version)
		case *packet.Subscribe:
			return packet.DecodeSubscribe(p, body, c.version)
		case *packet.SubAck:
			return packet.DecodeSubAck(p, h.Type, body, c.version)
		case *packet.Unsubscribe:
			return packet.DecodeUnsubscribe(p, body, c.version)
		case *packet.Disconnect:
			return packet.DecodeDisconnect(p, h.Type, body, c.version)
		}
		panic("unreachable")
	}
	var bugs []string
	for _, c := range validCases() {
		typ := packet.Type(hx(c.wire)[0] >> 4)
		name, ok := dirty[typ]
		if !ok {
			continue // PINGREQ, PINGRESP: no struct
		}
		var v any
		switch c.want.(type) {
		case *packet.Connect:
			v = new(packet.Connect)
		case *packet.Connack:
			v = new(packet.Connack)
		case *packet.Publish:
			v = new(packet.Publish)
		case *packet.Ack:
			v = new(packet.Ack)
		case *packet.Subscribe:
			v = new(packet.Subscribe)
		case *packet.SubAck:
			v = new(packet.SubAck)
		case *packet.Unsubscribe:
			v = new(packet.Unsubscribe)
		case *packet.Disconnect:
			v = new(packet.Disconnect)
		}
		if err := decodeInto(v, rows[name]); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := decodeInto(v, c); err != nil {
			t.Fatalf("%s after %s: %v", c.name, name, err)
		}
		if diff := cmp.Diff(c.want, v, cmpOpts...); diff != "" {
			// Known: stale properties survive where the decoder does not reset them.
			switch p := v.(type) {
			case *packet.Connect:
				if !p.HasWill && p.Will.Props.Present != 0 {
					bugs = append(bugs, c.name+": DecodeConnect keeps Will.Props when the new CONNECT has no will")
					continue
				}
			case *packet.Connack:
				if c.version < v5 && p.Props.Present != 0 {
					bugs = append(bugs, c.name+": DecodeConnack (3.1.1) keeps Props")
					continue
				}
			case *packet.SubAck:
				if c.version < v5 && p.Props.Present != 0 {
					bugs = append(bugs, c.name+": DecodeSubAck (3.1.1) keeps Props")
					continue
				}
			}
			t.Errorf("%s: decode into a %T that held %s differs from a fresh decode (-want +got):\n%s", c.name, v, name, diff)
		}
	}
	if len(bugs) > 0 {
		t.Errorf("stale fields after decoding into a reused struct:\n%s", strings.Join(bugs, "\n"))
	}
}

// TestDecodedCopySurvivesReuse: a packet copied out by value (e.g. queued for delivery) must not
// change when the original struct is reused for the next decode.
func TestDecodedCopySurvivesReuse(t *testing.T) {
	first := hx("32 14 00 01 74 00 01 0B 0B 05 26 00 01 6B 00 03 6F 6C 64 61 62 63")
	second := hx("32 14 00 01 74 00 02 0B 0B 09 26 00 01 6B 00 03 6E 65 77 78 79 7A")
	var p packet.Publish
	for i, wire := range [][]byte{first, second} {
		h, body, err := splitPacket(wire, v5)
		if err != nil {
			t.Fatal(err)
		}
		if err := packet.DecodePublish(&p, h.Flags, body, v5); err != nil {
			t.Fatalf("DecodePublish(%x) = %v", body, err)
		}
		if i == 0 {
			kept := p // what a broker queues
			defer func() {
				if kept.Props.User[0].Value != "old" || kept.Props.SubscriptionIDs[0] != 5 || kept.PacketID != 1 {
					t.Errorf("a by-value copy of a decoded Publish changed after the struct was reused: "+
						"User=%v SubscriptionIDs=%v (want [{k old}] [5]); properties() reuses p.User[:0] and "+
						"p.SubscriptionIDs[:0], so the copy shares their backing arrays", kept.Props.User, kept.Props.SubscriptionIDs)
				}
			}()
		}
	}
}

// TestEncodeOverlongStringNotInjected: a string longer than 65,535 bytes cannot be encoded with
// a two-byte length. The encoder must not write a wrong length prefix whose excess bytes the
// receiver would parse as something else (packet injection, CASES.md 3.5).
func TestEncodeOverlongStringNotInjected(t *testing.T) {
	p := packet.Publish{Topic: strings.Repeat("a", 65536) + "/x", Payload: []byte("p")}
	var enc []byte
	func() {
		defer func() {
			if r := recover(); r != nil {
				enc = nil // refusing by panic is acceptable
			}
		}()
		enc = packet.AppendPublish(nil, &p, v4)
	}()
	if enc == nil {
		return
	}
	got, err := decodePacket(enc, v4)
	if err == nil {
		if q := got.(*packet.Publish); q.Topic != p.Topic {
			t.Errorf("AppendPublish with a %d-byte topic wrote length prefix %x; the receiver decodes topic %q "+
				"and a %d-byte payload: appendString/appendBinary truncate uint16(len) instead of refusing",
				len(p.Topic), enc[4:6], q.Topic, len(q.Payload))
		}
	}
}

// [MQTT-3.2.2-8] [MQTT-3.14.2-1] Only the codes a CONNACK / DISCONNECT may carry go out;
// anything else becomes Unspecified Error.
func TestReasonCodeFor(t *testing.T) {
	for _, c := range []struct {
		in, connack, disconnect packet.ReasonCode
	}{
		{packet.Success, packet.Success, packet.Success},
		{packet.NotAuthorized, packet.NotAuthorized, packet.NotAuthorized},
		{packet.BadAuthenticationMethod, packet.BadAuthenticationMethod, packet.UnspecifiedError},
		{packet.SessionTakenOver, packet.UnspecifiedError, packet.SessionTakenOver},
		{packet.ServerShuttingDown, packet.UnspecifiedError, packet.ServerShuttingDown},
		{packet.Banned, packet.Banned, packet.UnspecifiedError},
		{packet.MaximumConnectTime, packet.UnspecifiedError, packet.MaximumConnectTime},
		{packet.GrantedQoS1, packet.UnspecifiedError, packet.UnspecifiedError},
		{packet.ReasonCode(0xFE), packet.UnspecifiedError, packet.UnspecifiedError},
	} {
		if got := c.in.ForConnack(); got != c.connack {
			t.Errorf("%#x.ForConnack() = %#x, want %#x", byte(c.in), byte(got), byte(c.connack))
		}
		if got := c.in.ForDisconnect(); got != c.disconnect {
			t.Errorf("%#x.ForDisconnect() = %#x, want %#x", byte(c.in), byte(got), byte(c.disconnect))
		}
	}
}
