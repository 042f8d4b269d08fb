package packet_test

import (
	"bytes"
	"testing"

	"vitalmq/internal/packet"
)

var benchPayload = bytes.Repeat([]byte{0xA5}, 64)

func benchPublish(version byte) *packet.Publish {
	p := &packet.Publish{QoS: 1, Topic: "rpm/p1/hr", PacketID: 0x1234, Payload: benchPayload}
	if version == v5 {
		p.Props = pr(packet.Properties{PayloadFormat: 0, MessageExpiry: 60, ContentType: "application/json",
			User: user("site", "ward-7")}, pPFI, pExpiry, pCType)
	}
	return p
}

var (
	benchConnect = &packet.Connect{Version: v5, CleanStart: true, KeepAlive: 60, ClientID: "p1-device-0001",
		HasUser: true, Username: "p1dev", HasPass: true, Password: []byte("pw1"),
		Props: pr(packet.Properties{SessionExpiry: 3600, ReceiveMaximum: 32, TopicAliasMaximum: 10}, pSessExp, pRMax, pTAMax)}
	benchSubscribe = &packet.Subscribe{PacketID: 7, Props: pr(packet.Properties{SubscriptionIDs: []uint32{3}}),
		Subs: []packet.Subscription{{Filter: "rpm/p1/#", QoS: 1}, {Filter: "rpm/p1/cmd", QoS: 2, NoLocal: true}}}
	benchPuback = &packet.Ack{Type: packet.PUBACK, PacketID: 0x1234}
)

// bodyOf returns the header and body of an encoded packet.
func bodyOf(b *testing.B, wire []byte, version byte) (packet.FixedHeader, []byte) {
	h, body, err := splitPacket(wire, version)
	if err != nil {
		b.Fatal(err)
	}
	return h, body
}

func BenchmarkDecodePublish(b *testing.B) {
	for _, c := range []struct {
		name    string
		version byte
	}{{"v311", v4}, {"v5", v5}} {
		b.Run(c.name, func(b *testing.B) {
			h, body := bodyOf(b, packet.AppendPublish(nil, benchPublish(c.version), c.version), c.version)
			var p packet.Publish
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := packet.DecodePublish(&p, h.Flags, body, c.version); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodePublish(b *testing.B) {
	for _, c := range []struct {
		name    string
		version byte
	}{{"v311", v4}, {"v5", v5}} {
		b.Run(c.name, func(b *testing.B) {
			p := benchPublish(c.version)
			buf := packet.AppendPublish(nil, p, c.version)
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				buf = packet.AppendPublish(buf[:0], p, c.version)
			}
		})
	}
}

func BenchmarkDecodeConnect(b *testing.B) {
	_, body := bodyOf(b, packet.AppendConnect(nil, benchConnect), v5)
	var c packet.Connect
	b.ReportAllocs()
	for b.Loop() {
		if err := packet.DecodeConnect(&c, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeConnect(b *testing.B) {
	buf := packet.AppendConnect(nil, benchConnect)
	b.ReportAllocs()
	for b.Loop() {
		buf = packet.AppendConnect(buf[:0], benchConnect)
	}
}

func BenchmarkDecodeSubscribe(b *testing.B) {
	_, body := bodyOf(b, packet.AppendSubscribe(nil, benchSubscribe, v5), v5)
	var s packet.Subscribe
	b.ReportAllocs()
	for b.Loop() {
		if err := packet.DecodeSubscribe(&s, body, v5); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeSubscribe(b *testing.B) {
	buf := packet.AppendSubscribe(nil, benchSubscribe, v5)
	b.ReportAllocs()
	for b.Loop() {
		buf = packet.AppendSubscribe(buf[:0], benchSubscribe, v5)
	}
}

func BenchmarkDecodePuback(b *testing.B) {
	h, body := bodyOf(b, packet.AppendAck(nil, benchPuback, v5), v5)
	var a packet.Ack
	b.ReportAllocs()
	for b.Loop() {
		if err := packet.DecodeAck(&a, h.Type, body, v5); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodePuback(b *testing.B) {
	buf := packet.AppendAck(nil, benchPuback, v5)
	b.ReportAllocs()
	for b.Loop() {
		buf = packet.AppendAck(buf[:0], benchPuback, v5)
	}
}

// TestEncodeIntoReusedBufferDoesNotAllocate: encoders append to the caller's slice; with room
// in it they must not allocate.
func TestEncodeIntoReusedBufferDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 4096)
	for _, c := range validCases() {
		if c.decodeOnly {
			continue
		}
		if n := testing.AllocsPerRun(50, func() { buf = encode(buf[:0], c.want, c.version) }); n != 0 {
			t.Errorf("%s: encode into a reused buffer: %v allocs/op, want 0", c.name, n)
		}
	}
	pub4, pub5 := benchPublish(v4), benchPublish(v5)
	for name, f := range map[string]func(){
		"publish v311": func() { buf = packet.AppendPublish(buf[:0], pub4, v4) },
		"publish v5":   func() { buf = packet.AppendPublish(buf[:0], pub5, v5) },
		"connect":      func() { buf = packet.AppendConnect(buf[:0], benchConnect) },
		"subscribe":    func() { buf = packet.AppendSubscribe(buf[:0], benchSubscribe, v5) },
		"puback":       func() { buf = packet.AppendAck(buf[:0], benchPuback, v5) },
	} {
		if n := testing.AllocsPerRun(50, f); n != 0 {
			t.Errorf("%s: %v allocs/op, want 0", name, n)
		}
	}
}
