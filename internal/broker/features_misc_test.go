package broker_test

import (
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// TestFtQoS2ExactlyOnceAcrossReconnect: a publisher with a persistent session sends a
// QoS 2 PUBLISH, gets PUBREC, loses the connection, reconnects without clean start and
// resends it with DUP=1: it is acknowledged again but not delivered again; PUBREL then
// completes the flow. [MQTT-4.3.3-9] [MQTT-4.4.0-1] (3.1.1 [MQTT-4.3.3-2] [MQTT-4.4.0-1])
func TestFtQoS2ExactlyOnceAcrossReconnect(t *testing.T) {
	ftVersions(t, func(t *testing.T, v byte) {
		s := startServer(t, broker.Config{})
		sub, _ := ftDial(t, s.Addr, v, "eor-sub", nil)
		sub.ftSub(v, "eor/t", 2)
		persist := func(p *packet.Connect) { ftPersist(p, 60); p.CleanStart = false }
		pub, _ := ftDial(t, s.Addr, v, "eor-pub", persist)
		p := &packet.Publish{QoS: 2, Topic: "eor/t", PacketID: 77, Payload: []byte("once")}
		pub.ftPublish(v, p)
		pub.ftReadAck(v, packet.PUBREC)
		m := sub.ftReadPublish(v)
		sub.ftAck(v, packet.PUBREC, m.PacketID)
		sub.ftReadAck(v, packet.PUBREL)
		sub.ftAck(v, packet.PUBCOMP, m.PacketID)
		pub.nc.Close()
		eventually(t, 2*time.Second, "publisher detached", func() bool { return s.Stats().Connected == 1 })

		pub, ack := ftDial(t, s.Addr, v, "eor-pub", persist)
		if !ack.SessionPresent {
			t.Fatal("session not present")
		}
		p.Dup = true
		pub.ftPublish(v, p)
		if a := pub.ftReadAck(v, packet.PUBREC); a.PacketID != 77 || a.Reason.IsError() {
			t.Fatalf("PUBREC %+v", a)
		}
		pub.ftAck(v, packet.PUBREL, 77)
		if a := pub.ftReadAck(v, packet.PUBCOMP); a.PacketID != 77 || a.Reason != 0 {
			t.Fatalf("PUBCOMP %+v, want success (the id was awaiting release)", a)
		}
		sub.expectSilence(300 * time.Millisecond) // not delivered twice
		checkAlive(t, s.Addr)
	})
}

// TestFtResubscribeReplaces: SUBSCRIBE with a filter identical to an existing one replaces
// it (new QoS applies, one delivery per message). [MQTT-3.8.4-3] (3.1.1 [MQTT-3.8.4-3])
func TestFtResubscribeReplaces(t *testing.T) {
	ftVersions(t, func(t *testing.T, v byte) {
		s := startServer(t, broker.Config{})
		c, _ := ftDial(t, s.Addr, v, "rs-sub", nil)
		c.ftSub(v, "rsb/t", 2)
		c.ftSub(v, "rsb/t", 0)
		pub, _ := ftDial(t, s.Addr, v, "rs-pub", nil)
		pub.ftPub1(v, &packet.Publish{QoS: 1, Topic: "rsb/t", PacketID: 1, Payload: []byte("x")})
		if m := c.ftReadPublish(v); m.QoS != 0 {
			t.Fatalf("delivered at QoS %d, want 0 from the replacing subscription", m.QoS)
		}
		c.expectSilence(200 * time.Millisecond)
		checkAlive(t, s.Addr)
	})
}

// TestFtUnsubscribe: UNSUBSCRIBE is answered with UNSUBACK (5.0: 0x00, or 0x11 for a
// filter with no subscription) and deliveries stop.
// [MQTT-3.10.4-1] [MQTT-3.10.4-4] [MQTT-3.10.4-5] [MQTT-3.11.3-1]
func TestFtUnsubscribe(t *testing.T) {
	ftVersions(t, func(t *testing.T, v byte) {
		s := startServer(t, broker.Config{})
		c, _ := ftDial(t, s.Addr, v, "us-sub", nil)
		c.ftSub(v, "us/a", 1)
		c.write(packet.AppendUnsubscribe(nil, &packet.Unsubscribe{PacketID: 5, Filters: []string{"us/a", "us/none"}}, v))
		b := c.expectType(packet.UNSUBACK)
		_, _, body := ftSplit(t, b)
		var ua packet.SubAck
		if err := packet.DecodeSubAck(&ua, packet.UNSUBACK, body, v); err != nil || ua.PacketID != 5 {
			t.Fatalf("UNSUBACK % x: %v", b, err)
		}
		if v == packet.Version5 && (len(ua.Reasons) != 2 || ua.Reasons[0] != 0 || ua.Reasons[1] != packet.NoSubscriptionExisted) {
			t.Errorf("UNSUBACK reasons %v, want [0x00 0x11]", ua.Reasons)
		}
		pub, _ := ftDial(t, s.Addr, v, "us-pub", nil)
		pub.ftPub1(v, &packet.Publish{QoS: 1, Topic: "us/a", PacketID: 1, Payload: []byte("x")})
		c.expectSilence(300 * time.Millisecond)
		checkAlive(t, s.Addr)
	})
}

// TestFtSubackFailure: an invalid topic filter is refused in SUBACK (3.1.1: 0x80,
// 5.0: 0x8F) while the other filters of the packet are granted.
// [MQTT-4.7.1-1] [MQTT-3.8.4-4] [MQTT-3.9.3-1] (3.1.1 [MQTT-3.9.3-2])
func TestFtSubackFailure(t *testing.T) {
	ftVersions(t, func(t *testing.T, v byte) {
		s := startServer(t, broker.Config{})
		c, _ := ftDial(t, s.Addr, v, "sf", nil)
		rc := c.ftSubscribe(v, 3, packet.Properties{}, packet.Subscription{Filter: "ok/+", QoS: 1}, packet.Subscription{Filter: "bad/#/x", QoS: 1})
		want := packet.ReasonCode(0x80)
		if v == packet.Version5 {
			want = packet.TopicFilterInvalid
		}
		if len(rc) != 2 || rc[0] != 1 || rc[1] != want {
			t.Fatalf("SUBACK %v, want [1 %#x]", rc, byte(want))
		}
		checkAlive(t, s.Addr)
	})
}

// TestFtDisconnectSessionExpiry5: DISCONNECT may lower the Session Expiry Interval to 0,
// ending the session; setting a non-zero one after 0 on CONNECT is a protocol error.
// §3.14.2.2.2 [MQTT-3.14.2-2]
func TestFtDisconnectSessionExpiry5(t *testing.T) {
	s := startServer(t, broker.Config{})
	persist := func(p *packet.Connect) { ftPersist(p, 60); p.CleanStart = false }
	c, _ := ftDial(t, s.Addr, ft5, "dse", persist)
	c.ftSub(ft5, "dse/t", 1)
	d := &packet.Disconnect{Type: packet.DISCONNECT}
	d.Props.SessionExpiry = 0
	d.Props.Set(packet.PropSessionExpiry)
	c.write(packet.AppendDisconnect(nil, d, ft5))
	c.expectClosed(2 * time.Second)
	c, ack := ftDial(t, s.Addr, ft5, "dse", persist)
	if ack.SessionPresent {
		t.Error("Session Present=1 after DISCONNECT with Session Expiry Interval 0")
	}
	c.ftDisconnect(ft5)

	z, _ := ftDial(t, s.Addr, ft5, "dse-zero", nil)
	d.Props.SessionExpiry = 30
	z.write(packet.AppendDisconnect(nil, d, ft5))
	if got := z.ftReadDisconnect(); got.Reason != packet.ProtocolError {
		t.Errorf("DISCONNECT %#x, want 0x82 [MQTT-3.14.2-2]", byte(got.Reason))
	}
	z.expectClosed(2 * time.Second)
	checkAlive(t, s.Addr)
}

// TestFtTakeoverPublishesWill5: when a session is taken over, the existing connection's
// will (no delay) is published. [MQTT-3.1.4-3] §3.1.2.5
func TestFtTakeoverPublishesWill5(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub, _ := ftDial(t, s.Addr, ft5, "tow-sub", nil)
	sub.ftSub(ft5, "tow/#", 1)
	old, _ := ftDial(t, s.Addr, ft5, "tow", ftWillConnect("tow/gone", "taken", 1, false))
	ftDial(t, s.Addr, ft5, "tow", nil)
	if d := old.ftReadDisconnect(); d.Reason != packet.SessionTakenOver {
		t.Errorf("DISCONNECT %#x, want 0x8E", byte(d.Reason))
	}
	if m := sub.ftReadPublish(ft5); m.Topic != "tow/gone" || string(m.Payload) != "taken" {
		t.Fatalf("got %+v, want the old connection's will", m)
	}
	checkAlive(t, s.Addr)
}

// TestFtPayloadFormatQoS2 5.0: an invalid UTF-8 payload with Payload Format Indicator 1
// at QoS 2 is refused with PUBREC 0x99, not delivered, and its packet id is free again.
// §3.3.2.3.2 §3.5.2.1 [MQTT-4.3.3-? error PUBREC ends the flow]
func TestFtPayloadFormatQoS2(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub, _ := ftDial(t, s.Addr, ft5, "pf2-sub", nil)
	sub.ftSub(ft5, "pf2/#", 2)
	pub, _ := ftDial(t, s.Addr, ft5, "pf2-pub", nil)
	bad := &packet.Publish{QoS: 2, Topic: "pf2/t", PacketID: 9, Payload: []byte{0xc3, 0x28}}
	bad.Props.PayloadFormat = 1
	bad.Props.Set(packet.PropPayloadFormat)
	pub.ftPublish(ft5, bad)
	if a := pub.ftReadAck(ft5, packet.PUBREC); a.Reason != packet.PayloadFormatInvalid {
		t.Errorf("PUBREC %#x, want 0x99", byte(a.Reason))
	}
	pub.ftPublish(ft5, &packet.Publish{QoS: 2, Topic: "pf2/t", PacketID: 9, Payload: []byte("fine")})
	if a := pub.ftReadAck(ft5, packet.PUBREC); a.Reason.IsError() {
		t.Fatalf("PUBREC %#x for a new message with the released id", byte(a.Reason))
	}
	if m := sub.ftReadPublish(ft5); string(m.Payload) != "fine" {
		t.Fatalf("delivered %q, want only the valid message", m.Payload)
	}
	checkAlive(t, s.Addr)
}

// TestFtWillAtSessionEnd5: with Will Delay 10 s and Session Expiry 1 s the will is
// published when the session ends, before the delay. [MQTT-3.1.3-9] §3.1.3.2.2
func TestFtWillAtSessionEnd5(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub, _ := ftDial(t, s.Addr, ft5, "wse-sub", nil)
	sub.ftSub(ft5, "wse/#", 1)
	c, _ := ftDial(t, s.Addr, ft5, "wse", func(p *packet.Connect) {
		ftWillConnect("wse/gone", "ended", 1, false)(p)
		p.Will.Props.WillDelay = 10
		p.Will.Props.Set(packet.PropWillDelay)
		ftPersist(p, 1)
	})
	c.nc.Close()
	m := sub.ftReadPublish(ft5) // within expectType's 2 s, far before the 10 s delay
	if m.Topic != "wse/gone" {
		t.Fatalf("got %+v", m)
	}
	checkAlive(t, s.Addr)
}

// TestFtOverlappingMaxQoS: two overlapping subscriptions (QoS 0 and 2) in 3.1.1: the
// message is delivered once at the maximum QoS. [MQTT-3.3.5-1 3.1.1] (5.0 [MQTT-3.3.4-2])
func TestFtOverlappingMaxQoS(t *testing.T) {
	ftVersions(t, func(t *testing.T, v byte) {
		s := startServer(t, broker.Config{})
		c, _ := ftDial(t, s.Addr, v, "ov", nil)
		c.ftSub(v, "ov/+", 0)
		c.ftSub(v, "ov/#", 2)
		pub, _ := ftDial(t, s.Addr, v, "ov-pub", nil)
		pub.ftPublish(v, &packet.Publish{QoS: 2, Topic: "ov/a", PacketID: 1, Payload: []byte("x")})
		pub.ftReadAck(v, packet.PUBREC)
		if m := c.ftReadPublish(v); m.QoS != 2 {
			t.Fatalf("delivered at QoS %d, want 2", m.QoS)
		}
		c.expectSilence(200 * time.Millisecond)
		checkAlive(t, s.Addr)
	})
}

// TestFtReceiveMaximumQoS2 5.0: with Receive Maximum 1 a QoS 2 message occupies the window
// until PUBCOMP, not just PUBREC. [MQTT-3.3.4-9] §4.9
func TestFtReceiveMaximumQoS2(t *testing.T) {
	s := startServer(t, broker.Config{})
	c, _ := ftDial(t, s.Addr, ft5, "rm2", func(p *packet.Connect) {
		p.Props.ReceiveMaximum = 1
		p.Props.Set(packet.PropReceiveMaximum)
	})
	c.ftSub(ft5, "rm2/t", 2)
	pub, _ := ftDial(t, s.Addr, ft5, "rm2-pub", nil)
	for i := range 2 {
		pub.ftPublish(ft5, &packet.Publish{QoS: 2, Topic: "rm2/t", PacketID: uint16(i + 1), Payload: []byte{'a' + byte(i)}})
		pub.ftReadAck(ft5, packet.PUBREC)
		pub.ftAck(ft5, packet.PUBREL, uint16(i+1))
		pub.ftReadAck(ft5, packet.PUBCOMP)
	}
	m := c.ftReadPublish(ft5)
	c.ftAck(ft5, packet.PUBREC, m.PacketID)
	if rel := c.ftReadAck(ft5, packet.PUBREL); rel.PacketID != m.PacketID {
		t.Fatalf("PUBREL %d", rel.PacketID)
	}
	c.expectSilence(300 * time.Millisecond) // still in flight until PUBCOMP
	c.ftAck(ft5, packet.PUBCOMP, m.PacketID)
	if m2 := c.ftReadPublish(ft5); string(m2.Payload) != "b" {
		t.Fatalf("got %q, want b", m2.Payload)
	}
	checkAlive(t, s.Addr)
}

// TestFtRetainedExpiry5: a retained message is sent to a new subscriber with its remaining
// Message Expiry Interval, and not at all once that passed. [MQTT-3.3.2-5] [MQTT-3.3.2-6]
func TestFtRetainedExpiry5(t *testing.T) {
	s := startServer(t, broker.Config{})
	pub, _ := ftDial(t, s.Addr, ft5, "rex-pub", nil)
	p := &packet.Publish{QoS: 1, Retain: true, Topic: "rex/t", PacketID: 1, Payload: []byte("short-lived")}
	p.Props.MessageExpiry = 1
	p.Props.Set(packet.PropMessageExpiry)
	pub.ftPub1(ft5, p)
	a, _ := ftDial(t, s.Addr, ft5, "rex-a", nil)
	a.ftSub(ft5, "rex/#", 1)
	if m := a.ftReadPublish(ft5); !m.Retain || m.Props.MessageExpiry != 1 {
		t.Fatalf("retained %+v, want RETAIN=1 and expiry 1", m)
	}
	time.Sleep(1200 * time.Millisecond) // the message lifetime under test, not an event
	b, _ := ftDial(t, s.Addr, ft5, "rex-b", nil)
	b.ftSub(ft5, "rex/#", 1)
	b.expectSilence(300 * time.Millisecond)
	checkAlive(t, s.Addr)
}
