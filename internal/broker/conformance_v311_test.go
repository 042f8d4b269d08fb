package broker_test

// Conformance tests for MQTT 3.1.1 (protocol level 4) normative statements the broker
// implements but no other test asserted (audit "IMPLEMENTED, UNTESTED"). Clause tags are
// the 3.1.1 numbering, marked (3.1.1). Helpers are shared with conformance_v5_test.go.

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

const cf4 = packet.Version311

// [MQTT-1.5.3-3] (3.1.1) A leading U+FEFF (EF BB BF) in a topic is neither skipped nor
// stripped: a subscription to the topic with the BOM receives it byte-identical, and
// "bom/t" without the BOM is a different topic in both directions.
func TestConformanceV311BOMNotStripped(t *testing.T) {
	s := startServer(t, broker.Config{})
	const name = "\xEF\xBB\xBFbom/t"
	withBOM, _ := ftDial(t, s.Addr, cf4, "cf4-bom", nil)
	withBOM.ftSub(cf4, name, 1)
	plain, _ := ftDial(t, s.Addr, cf4, "cf4-plain", nil)
	plain.ftSub(cf4, "bom/t", 1)
	pub, _ := ftDial(t, s.Addr, cf4, "cf4-bom-pub", nil)
	pub.ftPub1(cf4, &packet.Publish{QoS: 1, Topic: name, PacketID: 1, Payload: []byte("with")})
	m := withBOM.ftReadPublish(cf4)
	if m.Topic != name || string(m.Payload) != "with" {
		t.Fatalf("got topic % x payload %q, want % x", m.Topic, m.Payload, name)
	}
	withBOM.ftAck(cf4, packet.PUBACK, m.PacketID)
	plain.expectSilence(200 * time.Millisecond)
	pub.ftPub1(cf4, &packet.Publish{QoS: 1, Topic: "bom/t", PacketID: 2, Payload: []byte("without")})
	if m := plain.ftReadPublish(cf4); m.Topic != "bom/t" || string(m.Payload) != "without" {
		t.Fatalf("plain subscriber got %s=%q", m.Topic, m.Payload)
	}
	withBOM.expectSilence(200 * time.Millisecond)
	checkAlive(t, s.Addr)
}

// [MQTT-3.1.2-2] (3.1.1) An unsupported protocol level is answered with CONNACK return
// code 0x01 (unacceptable protocol level), then the connection is closed.
func TestConformanceV311UnsupportedLevel(t *testing.T) {
	s := startServer(t, broker.Config{})
	c := dialRaw(t, s.Addr)
	c.send("10 0E 00 04 4D 51 54 54 06 02 00 3C 00 02 70 31") // "MQTT", level 6, id "p1"
	c.expect("20 02 00 01")
	c.expectClosed(2 * time.Second)
	checkAlive(t, s.Addr)
}

// [MQTT-3.1.2-12] (3.1.1) With Will Flag 0 no will is published when the connection
// drops without DISCONNECT.
func TestConformanceV311NoWillWithoutWillFlag(t *testing.T) {
	s := startServer(t, broker.Config{})
	watch, _ := ftDial(t, s.Addr, cf4, "cf4-nw-watch", nil)
	watch.ftSub(cf4, "#", 1)
	c := dialRaw(t, s.Addr)
	c.send("10 10 00 04 4D 51 54 54 04 02 00 3C 00 04 63 66 6E 77") // flags 02: clean session, no will
	c.expect("20 02 00 00")
	atkAbort(c)
	cfWaitConnected(t, s, 1)
	watch.expectSilence(300 * time.Millisecond)
	checkAlive(t, s.Addr)
}

// [MQTT-3.1.2-16] (3.1.1) A will with Will Retain 0 is published non-retained: a live
// subscriber gets it, nothing is retained, a later subscriber gets nothing.
func TestConformanceV311WillRetainZero(t *testing.T) { cfWillRetainZero(t, cf4) }

// [MQTT-3.1.4-5] (3.1.1) After rejecting a CONNECT the server processes no more data from
// the client: a PUBLISH written in the same segment as the rejected CONNECT is dropped.
func TestConformanceV311RejectedConnectNoProcessing(t *testing.T) {
	s := startServer(t, broker.Config{})
	watch, _ := ftDial(t, s.Addr, cf4, "cf4-rj-watch", nil)
	watch.ftSub(cf4, "x/#", 1)
	publish := packet.AppendPublish(nil, &packet.Publish{Topic: "x/yz", Payload: []byte("z")}, cf4)
	for _, tc := range []struct {
		name    string
		connect *packet.Connect
		connack string
	}{
		// Empty client id with Clean Session 0: identifier rejected (0x02).
		{"empty client id", &packet.Connect{Version: cf4, KeepAlive: 60}, "20 02 00 02"},
		// An anonymous client the server accepted, then refused for its will topic (0x05):
		// had the PUBLISH been processed, it would have been delivered.
		{"refused will", &packet.Connect{Version: cf4, CleanStart: true, KeepAlive: 60, ClientID: "cf4-rj",
			HasWill: true, Will: packet.Will{Topic: "$w/t", Payload: []byte("w")}}, "20 02 00 05"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, s.Addr)
			c.write(append(packet.AppendConnect(nil, tc.connect), publish...))
			c.expect(tc.connack)
			atkClosed(t, c, 2*time.Second)
			watch.expectSilence(300 * time.Millisecond)
		})
	}
	checkAlive(t, s.Addr)
}

// [MQTT-3.3.1-3] (3.1.1) The DUP flag of an outgoing PUBLISH is set independently of the
// incoming one: a first delivery of a PUBLISH received with DUP 1 has DUP 0.
func TestConformanceV311DupNotPropagated(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub, _ := ftDial(t, s.Addr, cf4, "cf4-dup-sub", nil)
	sub.ftSub(cf4, "dup/#", 1)
	pub, _ := ftDial(t, s.Addr, cf4, "cf4-dup-pub", nil)
	pub.send("3A 0A 00 05 64 75 70 2F 74 00 07 78") // PUBLISH DUP=1 QoS 1 "dup/t" id 7 "x"
	pub.expect("40 02 00 07")
	m := sub.ftReadPublish(cf4)
	if m.Dup || m.QoS != 1 || m.Topic != "dup/t" || string(m.Payload) != "x" {
		t.Fatalf("delivery %+v, want DUP=0 QoS 1 dup/t=x", m)
	}
	sub.ftAck(cf4, packet.PUBACK, m.PacketID)
	checkAlive(t, s.Addr)
}

// [MQTT-3.3.1-12] (3.1.1) A PUBLISH with RETAIN 0 is not stored and neither removes nor
// replaces the retained message of its topic (not even with an empty payload).
func TestConformanceV311RetainZeroLeavesRetained(t *testing.T) { cfRetainZero(t, cf4) }

// [MQTT-3.10.4-3] (3.1.1) UNSUBSCRIBE does not abandon QoS 1 and QoS 2 deliveries already
// started: after the UNSUBACK a PUBREC still gets PUBREL, and when the (persistent) session
// resumes, the unacknowledged QoS 1 PUBLISH and the uncompleted PUBREL are sent again.
func TestConformanceV311UnsubscribeCompletesInflight(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub, _ := ftDial(t, s.Addr, cf4, "cf4-uq", func(p *packet.Connect) { p.CleanStart = false })
	sub.ftSub(cf4, "uq/#", 2)
	pub, _ := ftDial(t, s.Addr, cf4, "cf4-uq-pub", nil)
	pub.ftPub1(cf4, &packet.Publish{QoS: 1, Topic: "uq/1", PacketID: 1, Payload: []byte("one")})
	m1 := sub.ftReadPublish(cf4)
	cfPub2(t, pub, cf4, &packet.Publish{QoS: 2, Topic: "uq/2", PacketID: 2, Payload: []byte("two")})
	m2 := sub.ftReadPublish(cf4)
	if m1.QoS != 1 || m2.QoS != 2 {
		t.Fatalf("deliveries %+v %+v", m1, m2)
	}
	sub.write(packet.AppendUnsubscribe(nil, &packet.Unsubscribe{PacketID: 3, Filters: []string{"uq/#"}}, cf4))
	sub.expect("B0 02 00 03")
	sub.ftAck(cf4, packet.PUBREC, m2.PacketID)
	sub.expect("62 02 " + cfHex(m2.PacketID))
	sub.nc.Close() // neither PUBACK nor PUBCOMP
	cfWaitConnected(t, s, 1)

	sub = cfResume(t, s.Addr, cf4, "cf4-uq", 0, true)
	r := sub.ftReadPublish(cf4)
	if !r.Dup || r.PacketID != m1.PacketID || r.Topic != "uq/1" || string(r.Payload) != "one" {
		t.Fatalf("resumed %+v, want the QoS 1 message again (DUP=1, id %d)", r, m1.PacketID)
	}
	sub.expect("62 02 " + cfHex(m2.PacketID))
	sub.ftAck(cf4, packet.PUBACK, m1.PacketID)
	sub.ftAck(cf4, packet.PUBCOMP, m2.PacketID)
	sub.cfPing()
	pub.ftPub1(cf4, &packet.Publish{QoS: 1, Topic: "uq/1", PacketID: 4, Payload: []byte("after")})
	sub.expectSilence(300 * time.Millisecond) // unsubscribed: nothing new
	checkAlive(t, s.Addr)
}

// [MQTT-3.10.4-5] (3.1.1) UNSUBSCRIBE is answered with UNSUBACK even when no subscription
// was deleted.
func TestConformanceV311UnsubackWhenNothingDeleted(t *testing.T) {
	s := startServer(t, broker.Config{})
	c, _ := ftDial(t, s.Addr, cf4, "cf4-un", nil)
	c.send("A2 10 00 09 00 0C 6E 6F 74 68 69 6E 67 2F 68 65 72 65") // UNSUBSCRIBE id 9 "nothing/here"
	c.expect("B0 02 00 09")
	checkAlive(t, s.Addr)
}

// MQTT 3.1.1 over WebSocket:
// [MQTT-6.0.0-1] (3.1.1) a text frame closes the connection;
// [MQTT-6.0.0-2] (3.1.1) packets are not aligned to frames;
// [MQTT-6.0.0-4] (3.1.1) the server returns the subprotocol "mqtt".
func TestConformanceV311WebSocket(t *testing.T) {
	url := cfStartWS(t)
	connect := unhex(t, "10 0F 00 04 4D 51 54 54 04 02 00 3C 00 03 77 73 34") // level 4, id "ws4"
	t.Run("text frame closes", func(t *testing.T) {
		c, _ := cfDialWS(t, url, "mqtt")
		if err := c.Write(context.Background(), websocket.MessageText, connect); err != nil {
			t.Fatal(err)
		}
		cfWSClosedWithoutData(t, c)
	})
	t.Run("packets not aligned to frames", func(t *testing.T) {
		c, resp := cfDialWS(t, url, "mqtt")
		if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "mqtt" {
			t.Fatalf("Sec-WebSocket-Protocol %q, want mqtt", got)
		}
		rc := cfWSRaw(t, c)
		rc.write(connect[:7])
		rc.write(connect[7:])
		rc.expect("20 02 00 00")
		rc.write(unhex(t, "C0 00 82 09 00 05 00 04 77 73 2F 23 01")) // PINGREQ + SUBSCRIBE id 5 "ws/#" QoS 1
		rc.expect("D0 00")
		rc.expect("90 03 00 05 01")
	})
}
