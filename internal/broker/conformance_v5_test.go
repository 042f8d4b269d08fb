package broker_test

// Conformance tests for MQTT 5.0 normative statements the broker implements but no other
// test asserted (audit "IMPLEMENTED, UNTESTED"). Each test names its clause tags. Helpers
// defined here are prefixed cf (conformance); the 3.1.1 file shares them.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
	"vitalmq/internal/wslistener"
)

// ---- helpers ----

// cfPersist5 makes a 5.0 CONNECT resume (Clean Start 0) a session kept expiry seconds.
func cfPersist5(expiry uint32) func(*packet.Connect) {
	return func(p *packet.Connect) {
		p.CleanStart = false
		p.Props.SessionExpiry = expiry
		p.Props.Set(packet.PropSessionExpiry)
	}
}

// cfResume reconnects id with Clean Start 0 (5.0: Session Expiry expiry; 3.1.1: Clean
// Session 0) and fails unless the CONNACK is a success with Session Present = want.
func cfResume(t testing.TB, addr string, v byte, id string, expiry uint32, want bool) *rawConn {
	t.Helper()
	c, ack := ftDial(t, addr, v, id, func(p *packet.Connect) {
		ftPersist(p, expiry)
		p.CleanStart = false
	})
	if ack.SessionPresent != want {
		t.Fatalf("CONNACK for %q: Session Present %v, want %v", id, ack.SessionPresent, want)
	}
	return c
}

// cfWaitConnected waits until the broker counts n connected clients (a dropped
// connection has been detached from its session).
func cfWaitConnected(t testing.TB, s *testServer, n int) {
	t.Helper()
	eventually(t, 5*time.Second, fmt.Sprintf("%d connected clients", n), func() bool { return s.Stats().Connected == n })
}

// cfPub2 publishes at QoS 2 and completes the publisher's side of the flow
// (PUBREC, PUBREL, PUBCOMP); it returns the PUBREC reason.
func cfPub2(t testing.TB, c *rawConn, v byte, p *packet.Publish) packet.ReasonCode {
	t.Helper()
	c.ftPublish(v, p)
	rec := c.ftReadAck(v, packet.PUBREC)
	if rec.PacketID != p.PacketID {
		t.Fatalf("PUBREC id %d, want %d", rec.PacketID, p.PacketID)
	}
	c.ftAck(v, packet.PUBREL, p.PacketID)
	if comp := c.ftReadAck(v, packet.PUBCOMP); comp.PacketID != p.PacketID || comp.Reason != packet.Success {
		t.Fatalf("PUBCOMP %+v, want id %d success", comp, p.PacketID)
	}
	return rec.Reason
}

// cfHex formats a packet identifier as the two hex bytes of an exact packet.
func cfHex(id uint16) string { return fmt.Sprintf("%02X %02X", id>>8, id&0xff) }

// cfPing sends PINGREQ and requires PINGRESP to be the very next packet: everything the
// client sent before it has been handled and nothing else was queued for it.
func (c *rawConn) cfPing() {
	c.t.Helper()
	c.send("C0 00")
	c.expect("D0 00")
}

// cfStartWS starts a broker behind the WebSocket listener (path /mqtt) and returns its URL.
func cfStartWS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := serveOn(t, broker.Config{}, ln, wslistener.Listen(ln, "/mqtt", 1<<20, slog.New(slog.DiscardHandler)), nil)
	return "ws://" + s.Addr + "/mqtt"
}

// cfDialWS opens a WebSocket to url offering the subprotocols; it is closed at the end of the test.
func cfDialWS(t *testing.T, url string, protos ...string) (*websocket.Conn, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: protos})
	if err != nil {
		t.Fatalf("websocket dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c, resp
}

// cfWSRaw wraps a WebSocket as a rawConn: each write is one binary message, reads see the
// binary messages as one byte stream. (A read deadline that passes closes the WebSocket, so
// expectSilence must not be used on it.)
func cfWSRaw(t *testing.T, c *websocket.Conn) *rawConn {
	return &rawConn{t: t, nc: websocket.NetConn(context.Background(), c, websocket.MessageBinary)}
}

// cfWSClosedWithoutData reads from c until the WebSocket closes; it fails if a message
// arrives first or if it is still open after 2 s. It returns the close status (-1: none).
func cfWSClosedWithoutData(t *testing.T, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	typ, msg, err := c.Read(ctx)
	if err == nil {
		t.Fatalf("received a %v message % x, want the connection closed", typ, msg)
	}
	if ctx.Err() != nil {
		t.Fatalf("connection still open after 2 s (%v)", err)
	}
	return websocket.CloseStatus(err)
}

// ---- tests ----

// [MQTT-1.5.4-3] A UTF-8 encoded sequence 0xEF 0xBB 0xBF (U+FEFF) is not skipped or
// stripped: a topic and a User Property that start with it are forwarded byte-identical,
// and the topic is not the same as the one without it.
func TestConformanceV5BOMNotStripped(t *testing.T) {
	s := startServer(t, broker.Config{})
	all, _ := ftDial(t, s.Addr, ft5, "cf-bom-all", nil)
	all.ftSub(ft5, "#", 1)
	plain, _ := ftDial(t, s.Addr, ft5, "cf-bom-plain", nil)
	plain.ftSub(ft5, "bom", 1)
	pub, _ := ftDial(t, s.Addr, ft5, "cf-bom-pub", nil)
	const name = "\xEF\xBB\xBFbom"
	p := &packet.Publish{QoS: 1, Topic: name, PacketID: 1, Payload: []byte("x")}
	p.Props.User = []packet.UserProperty{{Key: "\xEF\xBB\xBFk", Value: "\xEF\xBB\xBFv"}}
	if rc := pub.ftPub1(ft5, p); rc != packet.Success {
		t.Fatalf("PUBACK reason %#x", byte(rc))
	}
	m := all.ftReadPublish(ft5)
	if m.Topic != name {
		t.Fatalf("topic % x, want % x (BOM kept)", m.Topic, name)
	}
	if want := []packet.UserProperty{{Key: "\xEF\xBB\xBFk", Value: "\xEF\xBB\xBFv"}}; !slices.Equal(m.Props.User, want) {
		t.Fatalf("user properties %q, want %q", m.Props.User, want)
	}
	all.ftAck(ft5, packet.PUBACK, m.PacketID)
	plain.expectSilence(200 * time.Millisecond) // "bom" without the BOM is another topic
	checkAlive(t, s.Addr)
}

// [MQTT-3.1.2-14] A will with Will Retain 0 is published as a non-retained message: a
// live subscriber (Retain As Published) sees RETAIN 0 and nothing is retained afterwards.
func TestConformanceV5WillRetainZero(t *testing.T) { cfWillRetainZero(t, ft5) }

// cfWillRetainZero: a will with Will Retain 0 reaches a live subscriber (5.0: Retain As
// Published) with RETAIN 0, nothing is retained, a later subscriber gets nothing.
func cfWillRetainZero(t *testing.T, v byte) {
	s := startServer(t, broker.Config{})
	live, _ := ftDial(t, s.Addr, v, "cf-w0-live", nil)
	if rc := live.ftSubscribe(v, 1, packet.Properties{}, packet.Subscription{Filter: "w0/#", QoS: 1, RetainAsPublished: v == ft5}); !slices.Equal(rc, []packet.ReasonCode{1}) {
		t.Fatalf("SUBACK %v", rc)
	}
	c, _ := ftDial(t, s.Addr, v, "cf-w0", ftWillConnect("w0/gone", "bye", 1, false))
	atkAbort(c)
	m := live.ftReadPublish(v)
	if m.Topic != "w0/gone" || string(m.Payload) != "bye" || m.Retain {
		t.Fatalf("will %s=%q retain=%v, want w0/gone=bye retain=0", m.Topic, m.Payload, m.Retain)
	}
	live.ftAck(v, packet.PUBACK, m.PacketID)
	if n := s.Stats().Retained; n != 0 {
		t.Fatalf("%d retained messages after a Will Retain 0 will, want 0", n)
	}
	late, _ := ftDial(t, s.Addr, v, "cf-w0-late", nil)
	late.ftSub(v, "w0/#", 1)
	late.expectSilence(300 * time.Millisecond)
	checkAlive(t, s.Addr)
}

// [MQTT-3.1.2-28] With Request Response Information 0 (or absent) the CONNACK carries no
// Response Information. The broker never offers it, so it is absent for 1 too.
func TestConformanceV5NoResponseInformation(t *testing.T) {
	s := startServer(t, broker.Config{})
	for _, rri := range []int{-1, 0, 1} {
		t.Run(fmt.Sprintf("rri=%d", rri), func(t *testing.T) {
			_, ack := ftDial(t, s.Addr, ft5, fmt.Sprintf("cf-rri%d", rri+1), func(p *packet.Connect) {
				if rri >= 0 {
					p.Props.RequestResponseInfo = byte(rri)
					p.Props.Set(packet.PropRequestResponseInfo)
				}
			})
			if ack.Props.Has(packet.PropResponseInfo) || ack.Props.ResponseInfo != "" {
				t.Fatalf("CONNACK carries Response Information %q", ack.Props.ResponseInfo)
			}
		})
	}
}

// [MQTT-3.1.2-29] With Request Problem Information 0 the server sends no Reason String or
// User Property on packets other than PUBLISH, CONNACK and DISCONNECT: the refusing
// PUBACK, PUBREC, SUBACK, UNSUBACK and PUBCOMP carry only their reason codes.
func TestConformanceV5RequestProblemInformationZero(t *testing.T) {
	s := startServer(t, broker.Config{})
	c, ack := ftDial(t, s.Addr, ft5, "cf-rpi", func(p *packet.Connect) {
		p.Props.RequestProblemInfo = 0
		p.Props.Set(packet.PropRequestProblemInfo)
	})
	if ack.Props.Has(packet.PropReasonString) || len(ack.Props.User) > 0 {
		t.Fatalf("CONNACK props %+v", ack.Props)
	}
	c.ftPublish(ft5, &packet.Publish{QoS: 1, Topic: "$x/t", PacketID: 1, Payload: []byte("p")})
	c.expect("40 03 00 01 87") // PUBACK Not authorized, no properties
	c.ftPublish(ft5, &packet.Publish{QoS: 2, Topic: "$x/t", PacketID: 2, Payload: []byte("p")})
	c.expect("50 03 00 02 87") // PUBREC Not authorized, no properties
	c.write(packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 3, Subs: []packet.Subscription{{Filter: "a/#/b"}}}, ft5))
	c.expect("90 04 00 03 00 8F") // SUBACK Topic Filter invalid, property length 0
	c.write(packet.AppendUnsubscribe(nil, &packet.Unsubscribe{PacketID: 4, Filters: []string{"none/here"}}, ft5))
	c.expect("B0 04 00 04 00 11") // UNSUBACK No subscription existed, property length 0
	c.ftAck(ft5, packet.PUBREL, 5)
	c.expect("70 03 00 05 92") // PUBCOMP Packet Identifier not found, no properties
	checkAlive(t, s.Addr)
}

// [MQTT-3.1.4-6] After refusing a CONNECT the server processes none of the data the client
// sent after it: a PUBLISH written together with the refused CONNECT is never delivered.
func TestConformanceV5RefusedConnectNoFurtherProcessing(t *testing.T) {
	s, _ := fxStart(t, broker.Config{})
	watch := fxAdmin(t, s, "cf-watch", "rpm/#")
	publish := packet.AppendPublish(nil, &packet.Publish{Topic: "rpm/p1/hr", Payload: []byte("72")}, ft5)
	for _, tc := range []struct {
		name    string
		connect *packet.Connect
		connack string
	}{
		{"bad password", &packet.Connect{Version: ft5, CleanStart: true, KeepAlive: 60, ClientID: "p1",
			HasUser: true, Username: "p1dev", HasPass: true, Password: []byte("wrong")}, "20 03 00 86 00"},
		// Authenticated (admin may publish anywhere), then refused for its will topic.
		{"refused will", &packet.Connect{Version: ft5, CleanStart: true, KeepAlive: 60, ClientID: "cf-admin",
			HasUser: true, Username: "admin", HasPass: true, Password: []byte("pwa"),
			HasWill: true, Will: packet.Will{Topic: "$w/t", Payload: []byte("w")}}, "20 03 00 87 00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, s.Addr)
			c.write(append(packet.AppendConnect(nil, tc.connect), publish...))
			c.expect(tc.connack)
			atkClosed(t, c, 2*time.Second)
			watch.expectSilence(300 * time.Millisecond)
		})
	}
	fxAlive(t, s)
}

// [MQTT-3.2.2-19] [MQTT-3.2.2-20] A CONNACK never carries a Reason String or User Property
// that would take it past the client's Maximum Packet Size: a refused client that accepts 8
// bytes gets exactly the 5-byte CONNACK, and a successful CONNACK carries neither.
func TestConformanceV5ConnackWithinMaximumPacketSize(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		s := startServer(t, broker.Config{Authenticator: challengeAuth{}}) // password logins refused (0x86)
		c := dialRaw(t, s.Addr)
		p := &packet.Connect{Version: ft5, CleanStart: true, KeepAlive: 60, ClientID: "cf-mps",
			HasUser: true, Username: "u", HasPass: true, Password: []byte("p")}
		p.Props.MaximumPacketSize = 8
		p.Props.Set(packet.PropMaximumPacketSize)
		c.write(packet.AppendConnect(nil, p))
		if got := readAll(t, c); !bytes.Equal(got, unhex(t, "20 03 00 86 00")) {
			t.Fatalf("received % x, want exactly 20 03 00 86 00 then close", got)
		}
	})
	t.Run("accepted", func(t *testing.T) {
		s := startServer(t, broker.Config{})
		_, ack := ftDial(t, s.Addr, ft5, "cf-mps-ok", nil)
		if ack.Props.Has(packet.PropReasonString) || len(ack.Props.User) > 0 {
			t.Fatalf("CONNACK carries Reason String %q / User Properties %v", ack.Props.ReasonString, ack.Props.User)
		}
	})
}

// [MQTT-3.3.1-8] A PUBLISH with RETAIN 0 is not stored as a retained message and neither
// replaces nor removes the existing one (not even with an empty payload).
func TestConformanceV5RetainZeroLeavesRetained(t *testing.T) { cfRetainZero(t, ft5) }

// cfRetainZero: RETAIN 0 publications (one with an empty payload) leave the topic's retained
// message alone and are not retained themselves.
func cfRetainZero(t *testing.T, v byte) {
	s := startServer(t, broker.Config{})
	pub, _ := ftDial(t, s.Addr, v, "cf-r0-pub", nil)
	pub.ftPub1(v, &packet.Publish{QoS: 1, Retain: true, Topic: "r0/t", PacketID: 1, Payload: []byte("a")})
	pub.ftPub1(v, &packet.Publish{QoS: 1, Topic: "r0/t", PacketID: 2, Payload: []byte("b")})
	pub.ftPub1(v, &packet.Publish{QoS: 1, Topic: "r0/t", PacketID: 3})
	pub.ftPub1(v, &packet.Publish{QoS: 1, Topic: "r0/u", PacketID: 4, Payload: []byte("c")})
	sub, _ := ftDial(t, s.Addr, v, "cf-r0-sub", nil)
	sub.ftSub(v, "r0/#", 1)
	m := sub.ftReadPublish(v)
	if m.Topic != "r0/t" || string(m.Payload) != "a" || !m.Retain {
		t.Fatalf("retained %s=%q retain=%v, want r0/t=a retain=1", m.Topic, m.Payload, m.Retain)
	}
	sub.ftAck(v, packet.PUBACK, m.PacketID)
	sub.expectSilence(300 * time.Millisecond) // r0/u was never retained
	if n := s.Stats().Retained; n != 1 {
		t.Fatalf("%d retained messages, want 1", n)
	}
	checkAlive(t, s.Addr)
}

// [MQTT-3.3.4-5] When a message goes out as several copies (a non-shared and a shared
// subscription of one session), each copy carries the Subscription Identifier of its own
// subscription only.
func TestConformanceV5SubscriptionIDPerCopy(t *testing.T) {
	s := startServer(t, broker.Config{})
	c, _ := ftDial(t, s.Addr, ft5, "cf-sid", nil)
	if rc := c.ftSubscribe(ft5, 1, packet.Properties{SubscriptionIDs: []uint32{6}}, packet.Subscription{Filter: "sid/#", QoS: 1}); !slices.Equal(rc, []packet.ReasonCode{1}) {
		t.Fatalf("SUBACK %v", rc)
	}
	if rc := c.ftSubscribe(ft5, 2, packet.Properties{SubscriptionIDs: []uint32{5}}, packet.Subscription{Filter: "$share/g/sid/#", QoS: 1}); !slices.Equal(rc, []packet.ReasonCode{1}) {
		t.Fatalf("SUBACK %v", rc)
	}
	pub, _ := ftDial(t, s.Addr, ft5, "cf-sid-pub", nil)
	pub.ftPub1(ft5, &packet.Publish{QoS: 1, Topic: "sid/a", PacketID: 1, Payload: []byte("x")})
	var got []string
	for range 2 {
		m := c.ftReadPublish(ft5)
		if m.Topic != "sid/a" || string(m.Payload) != "x" {
			t.Fatalf("copy %s=%q", m.Topic, m.Payload)
		}
		got = append(got, fmt.Sprint(m.Props.SubscriptionIDs))
		c.ftAck(ft5, packet.PUBACK, m.PacketID)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"[5]", "[6]"}) {
		t.Fatalf("subscription identifiers of the copies %v, want [5] and [6]", got)
	}
	c.expectSilence(200 * time.Millisecond)
	checkAlive(t, s.Addr)
}

// [MQTT-3.3.4-10] [MQTT-4.9.0-3] With its send quota at 0 (Receive Maximum 1, one QoS 1
// message unacknowledged, more queued) the server still answers every other packet at once:
// PINGRESP, SUBACK, UNSUBACK and the PUBACK of the client's own PUBLISH.
func TestConformanceV5QuotaZeroOtherPacketsFlow(t *testing.T) {
	s := startServer(t, broker.Config{})
	c, _ := ftDial(t, s.Addr, ft5, "cf-q0", func(p *packet.Connect) {
		p.Props.ReceiveMaximum = 1
		p.Props.Set(packet.PropReceiveMaximum)
	})
	c.ftSub(ft5, "q0/#", 1)
	pub, _ := ftDial(t, s.Addr, ft5, "cf-q0-pub", nil)
	for i := range 3 {
		pub.ftPub1(ft5, &packet.Publish{QoS: 1, Topic: "q0/t", PacketID: uint16(i + 1), Payload: []byte{'0' + byte(i)}})
	}
	first := c.ftReadPublish(ft5)
	if string(first.Payload) != "0" {
		t.Fatalf("first delivery %q", first.Payload)
	}
	c.expectSilence(200 * time.Millisecond) // quota 0: the other two wait
	c.cfPing()
	c.write(packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 9, Subs: []packet.Subscription{{Filter: "other/#"}}}, ft5))
	c.expect("90 04 00 09 00 00")
	c.write(packet.AppendUnsubscribe(nil, &packet.Unsubscribe{PacketID: 10, Filters: []string{"other/#"}}, ft5))
	c.expect("B0 04 00 0A 00 00")
	c.ftPublish(ft5, &packet.Publish{QoS: 1, Topic: "own/t", PacketID: 11, Payload: []byte("o")})
	c.expect("40 03 00 0B 10") // PUBACK, no matching subscribers
	// The quota still holds: only a PUBACK lets the next message go.
	c.ftAck(ft5, packet.PUBACK, first.PacketID)
	if m := c.ftReadPublish(ft5); string(m.Payload) != "1" {
		t.Fatalf("second delivery %q, want 1", m.Payload)
	}
	checkAlive(t, s.Addr)
}

// PUBREL and PUBCOMP from the server use their own reason codes and carry no properties
// (so no Reason String or User Property beyond the client's Maximum Packet Size):
// [MQTT-3.6.2-1] PUBREL 0x00 or 0x92 [MQTT-3.6.2-2] [MQTT-3.6.2-3]
// [MQTT-3.7.2-1] PUBCOMP 0x00 or 0x92 [MQTT-3.7.2-2] [MQTT-3.7.2-3]
func TestConformanceV5PubrelPubcompReasons(t *testing.T) {
	s := startServer(t, broker.Config{})
	c, _ := ftDial(t, s.Addr, ft5, "cf-ack", nil)
	c.ftSub(ft5, "ack/#", 2)
	t.Run("PUBREL unknown id", func(t *testing.T) {
		c.ftAck(ft5, packet.PUBREC, 0x2A)
		c.expect("62 03 00 2A 92") // [MQTT-3.6.2-1] Packet Identifier not found
	})
	t.Run("PUBCOMP unknown id", func(t *testing.T) {
		c.ftAck(ft5, packet.PUBREL, 0x2B)
		c.expect("70 03 00 2B 92") // [MQTT-3.7.2-1] Packet Identifier not found
	})
	t.Run("success", func(t *testing.T) {
		pub, _ := ftDial(t, s.Addr, ft5, "cf-ack-pub", nil)
		pub.ftPublish(ft5, &packet.Publish{QoS: 2, Topic: "ack/t", PacketID: 7, Payload: []byte("x")})
		pub.expect("50 02 00 07")
		pub.ftAck(ft5, packet.PUBREL, 7)
		pub.expect("70 02 00 07") // PUBCOMP success, no properties
		m := c.ftReadPublish(ft5)
		c.ftAck(ft5, packet.PUBREC, m.PacketID)
		c.expect("62 02 " + cfHex(m.PacketID)) // PUBREL success, no properties
		c.ftAck(ft5, packet.PUBCOMP, m.PacketID)
		c.cfPing()
	})
	checkAlive(t, s.Addr)
}

// [MQTT-3.10.4-3] UNSUBSCRIBE does not abandon deliveries already started: a QoS 2 flow
// goes on to PUBREL and PUBCOMP, and an unacknowledged QoS 1 message is still re-sent
// when the session resumes.
func TestConformanceV5UnsubscribeCompletesInflight(t *testing.T) {
	s := startServer(t, broker.Config{})
	pub, _ := ftDial(t, s.Addr, ft5, "cf-uq-pub", nil)
	t.Run("qos2", func(t *testing.T) {
		sub, _ := ftDial(t, s.Addr, ft5, "cf-uq2", nil)
		sub.ftSub(ft5, "uq2/#", 2)
		cfPub2(t, pub, ft5, &packet.Publish{QoS: 2, Topic: "uq2/t", PacketID: 1, Payload: []byte("two")})
		m := sub.ftReadPublish(ft5)
		sub.write(packet.AppendUnsubscribe(nil, &packet.Unsubscribe{PacketID: 3, Filters: []string{"uq2/#"}}, ft5))
		sub.expect("B0 04 00 03 00 00")
		sub.ftAck(ft5, packet.PUBREC, m.PacketID)
		sub.expect("62 02 " + cfHex(m.PacketID))
		sub.ftAck(ft5, packet.PUBCOMP, m.PacketID)
		sub.cfPing() // PUBCOMP accepted: nothing re-sent, connection open
		if rc := pub.ftPub1(ft5, &packet.Publish{QoS: 1, Topic: "uq2/t", PacketID: 2, Payload: []byte("after")}); rc != packet.NoMatchingSubscribers {
			t.Fatalf("after UNSUBSCRIBE PUBACK %#x, want 0x10", byte(rc))
		}
	})
	t.Run("qos1", func(t *testing.T) {
		sub, _ := ftDial(t, s.Addr, ft5, "cf-uq1", cfPersist5(60))
		sub.ftSub(ft5, "uq1/#", 1)
		pub.ftPub1(ft5, &packet.Publish{QoS: 1, Topic: "uq1/t", PacketID: 4, Payload: []byte("one")})
		m := sub.ftReadPublish(ft5)
		sub.write(packet.AppendUnsubscribe(nil, &packet.Unsubscribe{PacketID: 5, Filters: []string{"uq1/#"}}, ft5))
		sub.expect("B0 04 00 05 00 00")
		sub.nc.Close() // not acknowledged
		cfWaitConnected(t, s, 1)
		sub = cfResume(t, s.Addr, ft5, "cf-uq1", 60, true)
		r := sub.ftReadPublish(ft5)
		if !r.Dup || r.PacketID != m.PacketID || string(r.Payload) != "one" {
			t.Fatalf("resumed delivery %+v, want DUP=1 id %d payload one", r, m.PacketID)
		}
		sub.ftAck(ft5, packet.PUBACK, r.PacketID)
		sub.cfPing()
	})
	checkAlive(t, s.Addr)
}

// [MQTT-3.11.2-1] [MQTT-3.11.2-2] The UNSUBACK carries no Reason String or User Property:
// its property length is 0, followed by one reason code per filter.
func TestConformanceV5UnsubackNoProperties(t *testing.T) {
	s := startServer(t, broker.Config{})
	c, _ := ftDial(t, s.Addr, ft5, "cf-unsub", nil)
	c.ftSub(ft5, "us/a", 1)
	c.write(packet.AppendUnsubscribe(nil, &packet.Unsubscribe{PacketID: 5, Filters: []string{"us/a", "us/none"}}, ft5))
	c.expect("B0 05 00 05 00 00 11")
	checkAlive(t, s.Addr)
}

// [MQTT-3.14.2-2] The server never sends a Session Expiry Interval in DISCONNECT;
// [MQTT-3.14.2-4] nor a User Property.
func TestConformanceV5ServerDisconnectProperties(t *testing.T) {
	s := startServer(t, broker.Config{})
	t.Run("protocol error", func(t *testing.T) {
		c, _ := ftDial(t, s.Addr, ft5, "cf-dse", cfPersist5(60))
		c.write(packet.AppendConnect(nil, &packet.Connect{Version: ft5, CleanStart: true, KeepAlive: 60, ClientID: "cf-dse"}))
		d := c.ftReadDisconnect()
		if d.Reason != packet.ProtocolError {
			t.Fatalf("DISCONNECT reason %#x, want 0x82", byte(d.Reason))
		}
		if d.Props.Has(packet.PropSessionExpiry) || len(d.Props.User) > 0 {
			t.Fatalf("DISCONNECT properties %+v: Session Expiry or User Property present", d.Props)
		}
		c.expectClosed(2 * time.Second)
	})
	t.Run("takeover", func(t *testing.T) {
		old, _ := ftDial(t, s.Addr, ft5, "cf-dto", cfPersist5(60))
		ftDial(t, s.Addr, ft5, "cf-dto", cfPersist5(60))
		old.expect("E0 01 8E") // Session taken over, no properties at all
		old.expectClosed(2 * time.Second)
	})
	checkAlive(t, s.Addr)
}

// [MQTT-3.15.2-2] [MQTT-3.15.2-3] The server's AUTH carries only the Authentication Method
// and Data: no Reason String, no User Property.
func TestConformanceV5AuthNoReasonStringOrUserProperty(t *testing.T) {
	s := startServer(t, broker.Config{Authenticator: challengeAuth{}})
	c := dialRaw(t, s.Addr)
	c.write(packet.AppendConnect(nil, crConnect()))
	want := packet.Disconnect{Type: packet.AUTH, Reason: packet.ContinueAuthentication}
	want.Props.AuthMethod, want.Props.AuthData = "TEST-CR", []byte("nonce")
	want.Props.Set(packet.PropAuthMethod)
	want.Props.Set(packet.PropAuthData)
	got := c.expectType(packet.AUTH)
	if w := packet.AppendDisconnect(nil, &want, ft5); !bytes.Equal(got, w) {
		t.Fatalf("AUTH % x, want exactly % x", got, w)
	}
	_, _, body := ftSplit(t, got)
	var a packet.Disconnect
	if err := packet.DecodeDisconnect(&a, packet.AUTH, body, ft5); err != nil {
		t.Fatal(err)
	}
	if a.Props.Has(packet.PropReasonString) || len(a.Props.User) > 0 {
		t.Fatalf("AUTH properties %+v", a.Props)
	}
	c.write(authPacket("nonce:secret"))
	b := c.expectType(packet.CONNACK)
	if b[3] != 0 {
		t.Fatalf("CONNACK % x, want success", b)
	}
}

// [MQTT-4.1.0-1] The server does not discard the session while the client is connected,
// even past its Session Expiry Interval: after 1.5 s connected with expiry 1 s, the
// subscription still receives.
func TestConformanceV5SessionKeptWhileConnected(t *testing.T) {
	s := startServer(t, broker.Config{})
	c, _ := ftDial(t, s.Addr, ft5, "cf-live", func(p *packet.Connect) {
		p.Props.SessionExpiry = 1
		p.Props.Set(packet.PropSessionExpiry)
	})
	c.ftSub(ft5, "live/#", 1)
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); {
		c.cfPing()
		c.expectSilence(250 * time.Millisecond) // and no DISCONNECT
	}
	if n := s.Stats().Sessions; n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}
	pub, _ := ftDial(t, s.Addr, ft5, "cf-live-pub", nil)
	if rc := pub.ftPub1(ft5, &packet.Publish{QoS: 1, Topic: "live/t", PacketID: 1, Payload: []byte("still")}); rc != packet.Success {
		t.Fatalf("PUBACK %#x, want success (the subscription is gone?)", byte(rc))
	}
	if m := c.ftReadPublish(ft5); string(m.Payload) != "still" {
		t.Fatalf("got %q", m.Payload)
	}
	checkAlive(t, s.Addr)
}

// [MQTT-4.3.3-3] A QoS 2 PUBLISH stays unacknowledged until its PUBREC: after the
// connection drops without one, the resumed session gets it again with the same packet
// identifier and DUP 1.
func TestConformanceV5QoS2UnacknowledgedUntilPubrec(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub, _ := ftDial(t, s.Addr, ft5, "cf-q2r", cfPersist5(60))
	sub.ftSub(ft5, "q2r/#", 2)
	pub, _ := ftDial(t, s.Addr, ft5, "cf-q2r-pub", nil)
	cfPub2(t, pub, ft5, &packet.Publish{QoS: 2, Topic: "q2r/t", PacketID: 1, Payload: []byte("two")})
	m := sub.ftReadPublish(ft5)
	if m.QoS != 2 || m.Dup {
		t.Fatalf("first delivery %+v", m)
	}
	atkAbort(sub)
	cfWaitConnected(t, s, 1)
	sub = cfResume(t, s.Addr, ft5, "cf-q2r", 60, true)
	cfResentQoS2(t, sub, m, "q2r/t", "two")
	checkAlive(t, s.Addr)
}

// cfResentQoS2 expects m again on a resumed session, as DUP with the same packet id, and
// completes its QoS 2 flow: PUBREC, then PUBREL [MQTT-4.3.3-13], then PUBCOMP.
func cfResentQoS2(t *testing.T, sub *rawConn, m *packet.Publish, topic, payload string) {
	t.Helper()
	r := sub.ftReadPublish(ft5)
	if !r.Dup || r.QoS != 2 || r.PacketID != m.PacketID || r.Topic != topic || string(r.Payload) != payload {
		t.Fatalf("resent %+v, want the sent QoS 2 PUBLISH again (DUP=1, id %d)", r, m.PacketID)
	}
	sub.ftAck(ft5, packet.PUBREC, r.PacketID)
	sub.expect("62 02 " + cfHex(r.PacketID))
	sub.ftAck(ft5, packet.PUBCOMP, r.PacketID)
	sub.cfPing()
}

// [MQTT-4.3.3-7] Once a QoS 2 PUBLISH has been sent, message expiry no longer applies to
// it: after its Message Expiry Interval has passed, the resumed session still gets it
// (DUP 1), and [MQTT-4.3.3-13] the QoS 2 flow continues to PUBREL and PUBCOMP.
func TestConformanceV5QoS2SentIgnoresExpiry(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub, _ := ftDial(t, s.Addr, ft5, "cf-mx", cfPersist5(60))
	sub.ftSub(ft5, "mx/#", 2)
	pub, _ := ftDial(t, s.Addr, ft5, "cf-mx-pub", nil)
	p := &packet.Publish{QoS: 2, Retain: true, Topic: "mx/t", PacketID: 1, Payload: []byte("short-lived")}
	p.Props.MessageExpiry = 1
	p.Props.Set(packet.PropMessageExpiry)
	cfPub2(t, pub, ft5, p)
	m := sub.ftReadPublish(ft5)
	if m.QoS != 2 || !m.Props.Has(packet.PropMessageExpiry) {
		t.Fatalf("first delivery %+v", m)
	}
	atkAbort(sub) // no PUBREC
	cfWaitConnected(t, s, 1)

	// Wait until the message has expired: its retained copy is no longer sent to a new
	// subscription (Retain Handling 0 re-sends retained messages on every SUBSCRIBE).
	probe, _ := ftDial(t, s.Addr, ft5, "cf-mx-probe", nil)
	id := uint16(0)
	eventually(t, 5*time.Second, "message expiry", func() bool {
		id++
		probe.ftSubscribe(ft5, id, packet.Properties{}, packet.Subscription{Filter: "mx/t"})
		b, err := probe.readPacket(100 * time.Millisecond)
		if err == nil && packet.Type(b[0]>>4) != packet.PUBLISH {
			t.Fatalf("probe got % x", b)
		}
		return err != nil
	})

	sub = cfResume(t, s.Addr, ft5, "cf-mx", 60, true)
	cfResentQoS2(t, sub, m, "mx/t", "short-lived") // after its expiry [MQTT-4.3.3-7]
	checkAlive(t, s.Addr)
}

// [MQTT-4.4.0-2] A PUBACK or PUBREC with a reason code of 0x80 or more acknowledges the
// message: no PUBREL follows, and nothing is re-sent when the session resumes.
func TestConformanceV5ErrorAckNotResent(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub, _ := ftDial(t, s.Addr, ft5, "cf-nk", cfPersist5(60))
	sub.ftSub(ft5, "nk/#", 2)
	pub, _ := ftDial(t, s.Addr, ft5, "cf-nk-pub", nil)
	pub.ftPub1(ft5, &packet.Publish{QoS: 1, Topic: "nk/1", PacketID: 1, Payload: []byte("one")})
	m1 := sub.ftReadPublish(ft5)
	cfPub2(t, pub, ft5, &packet.Publish{QoS: 2, Topic: "nk/2", PacketID: 2, Payload: []byte("two")})
	m2 := sub.ftReadPublish(ft5)
	if m1.QoS != 1 || m2.QoS != 2 {
		t.Fatalf("deliveries %+v %+v", m1, m2)
	}
	sub.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBACK, PacketID: m1.PacketID, Reason: packet.UnspecifiedError}, ft5))
	sub.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBREC, PacketID: m2.PacketID, Reason: packet.UnspecifiedError}, ft5))
	sub.cfPing() // no PUBREL for the refused PUBREC
	sub.nc.Close()
	cfWaitConnected(t, s, 1)
	sub = cfResume(t, s.Addr, ft5, "cf-nk", 60, true)
	sub.expectSilence(300 * time.Millisecond)
	checkAlive(t, s.Addr)
}

// [MQTT-4.8.2-3] A shared subscription delivers at most the QoS its member was granted:
// a QoS 2 publication reaches a QoS 0 member at QoS 0 and a QoS 1 member at QoS 1.
func TestConformanceV5SharedGrantedQoS(t *testing.T) {
	s := startServer(t, broker.Config{})
	a, _ := ftDial(t, s.Addr, ft5, "cf-sq-a", nil)
	a.ftSub(ft5, "$share/g0/sq/#", 0)
	b, _ := ftDial(t, s.Addr, ft5, "cf-sq-b", nil)
	b.ftSub(ft5, "$share/g1/sq/#", 1)
	pub, _ := ftDial(t, s.Addr, ft5, "cf-sq-pub", nil)
	cfPub2(t, pub, ft5, &packet.Publish{QoS: 2, Topic: "sq/t", PacketID: 1, Payload: []byte("x")})
	if m := a.ftReadPublish(ft5); m.QoS != 0 || m.PacketID != 0 || string(m.Payload) != "x" {
		t.Fatalf("QoS 0 member got %+v", m)
	}
	m := b.ftReadPublish(ft5)
	if m.QoS != 1 || string(m.Payload) != "x" {
		t.Fatalf("QoS 1 member got %+v", m)
	}
	b.ftAck(ft5, packet.PUBACK, m.PacketID)
	checkAlive(t, s.Addr)
}

// Shared subscriptions and QoS 2 in flight:
// [MQTT-4.8.2-4] a member whose connection drops completes the QoS 2 delivery when it
// reconnects, and the message is not given to another member;
// [MQTT-4.8.2-5] if the member's session ends instead, the message is not sent to any
// other member.
func TestConformanceV5SharedQoS2InFlight(t *testing.T) {
	for _, tc := range []struct {
		name   string
		expiry uint32
	}{{"reconnect", 60}, {"session ends", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, broker.Config{})
			a, _ := ftDial(t, s.Addr, ft5, "cf-sp-a", cfPersist5(tc.expiry))
			a.ftSub(ft5, "$share/g/sp/#", 2)
			pub, _ := ftDial(t, s.Addr, ft5, "cf-sp-pub", nil)
			cfPub2(t, pub, ft5, &packet.Publish{QoS: 2, Topic: "sp/t", PacketID: 1, Payload: []byte("two")})
			m := a.ftReadPublish(ft5) // a is the only member
			b, _ := ftDial(t, s.Addr, ft5, "cf-sp-b", nil)
			b.ftSub(ft5, "$share/g/sp/#", 2)
			atkAbort(a) // no PUBREC
			cfWaitConnected(t, s, 2)
			b.expectSilence(300 * time.Millisecond)
			a = cfResume(t, s.Addr, ft5, "cf-sp-a", 60, tc.expiry > 0)
			if tc.expiry == 0 {
				a.expectSilence(200 * time.Millisecond) // gone with the session
				return
			}
			r := a.ftReadPublish(ft5)
			if !r.Dup || r.QoS != 2 || r.PacketID != m.PacketID || string(r.Payload) != "two" {
				t.Fatalf("resumed member got %+v, want DUP=1 QoS 2 id %d", r, m.PacketID)
			}
			a.ftAck(ft5, packet.PUBREC, r.PacketID)
			a.expect("62 02 " + cfHex(r.PacketID))
			a.ftAck(ft5, packet.PUBCOMP, r.PacketID)
			b.expectSilence(200 * time.Millisecond)
		})
	}
}

// [MQTT-4.8.2-6] A shared-subscription member that answers PUBACK (or PUBREC) with a reason
// code of 0x80 or more has the message discarded: it is not sent to another member, not
// even when the refusing member disconnects.
func TestConformanceV5SharedErrorAckDiscards(t *testing.T) {
	for _, tc := range []struct {
		name string
		qos  byte
		ack  packet.Type
	}{{"puback", 1, packet.PUBACK}, {"pubrec", 2, packet.PUBREC}} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, broker.Config{})
			a, _ := ftDial(t, s.Addr, ft5, "cf-sn-a", nil)
			a.ftSub(ft5, "$share/g/sn/#", tc.qos)
			pub, _ := ftDial(t, s.Addr, ft5, "cf-sn-pub", nil)
			p := &packet.Publish{QoS: tc.qos, Topic: "sn/t", PacketID: 1, Payload: []byte("refused")}
			if tc.qos == 1 {
				pub.ftPub1(ft5, p)
			} else {
				cfPub2(t, pub, ft5, p)
			}
			m := a.ftReadPublish(ft5)
			b, _ := ftDial(t, s.Addr, ft5, "cf-sn-b", nil)
			b.ftSub(ft5, "$share/g/sn/#", tc.qos)
			a.write(packet.AppendAck(nil, &packet.Ack{Type: tc.ack, PacketID: m.PacketID, Reason: packet.UnspecifiedError}, ft5))
			a.cfPing()
			// Unacknowledged shared messages go to another member when a member leaves
			// (TestFtSharedRedeliveryOnDisconnect5); this one was acknowledged with an error.
			a.nc.Close()
			cfWaitConnected(t, s, 2)
			b.expectSilence(300 * time.Millisecond)
		})
	}
}

// [MQTT-4.12.0-6] Without an Authentication Method in CONNECT the server sends no AUTH and
// no Authentication Method or Data in CONNACK.
func TestConformanceV5NoAuthMethodNoAuth(t *testing.T) {
	s := startServer(t, broker.Config{})
	c := dialRaw(t, s.Addr)
	ack := c.ftConnect(&packet.Connect{Version: ft5, CleanStart: true, KeepAlive: 60, ClientID: "cf-noauth"}) // first packet must be CONNACK
	if ack.Reason != packet.Success || ack.Props.Has(packet.PropAuthMethod) || ack.Props.Has(packet.PropAuthData) {
		t.Fatalf("CONNACK %+v, want success without Authentication Method/Data", ack)
	}
	c.cfPing()
}

// [MQTT-4.12.1-2] A re-authentication the server does not accept ends the connection: a
// DISCONNECT with an error reason (SHOULD), then the close (MUST).
func TestConformanceV5ReauthFailureCloses(t *testing.T) {
	s := startServer(t, broker.Config{Authenticator: challengeAuth{}})
	c := dialRaw(t, s.Addr)
	c.write(packet.AppendConnect(nil, crConnect()))
	c.expectType(packet.AUTH)
	c.write(authPacket("nonce:secret"))
	if b := c.expectType(packet.CONNACK); b[3] != 0 {
		t.Fatalf("CONNACK % x", b)
	}
	re := packet.Disconnect{Type: packet.AUTH, Reason: packet.ReAuthenticate}
	re.Props.AuthMethod, re.Props.AuthData = "TEST-CR", []byte("again")
	re.Props.Set(packet.PropAuthMethod)
	re.Props.Set(packet.PropAuthData)
	c.write(packet.AppendDisconnect(nil, &re, ft5))
	atkClosed(t, c, 2*time.Second, func(p []byte) bool {
		return len(p) >= 3 && p[0] == 0xE0 && p[2] >= 0x80 // one DISCONNECT with an error reason
	})
}

// MQTT over WebSocket:
// [MQTT-6.0.0-1] a non-binary (text) frame closes the connection;
// [MQTT-6.0.0-2] packets need not align with frames (one packet over two frames, two
// packets in one frame);
// [MQTT-6.0.0-4] the server selects the subprotocol "mqtt" (and refuses a client that
// offers none).
func TestConformanceV5WebSocket(t *testing.T) {
	url := cfStartWS(t)
	connect := packet.AppendConnect(nil, &packet.Connect{Version: ft5, CleanStart: true, KeepAlive: 60, ClientID: "cf-ws"})
	t.Run("text frame closes", func(t *testing.T) {
		c, _ := cfDialWS(t, url, "mqtt")
		if err := c.Write(context.Background(), websocket.MessageText, connect); err != nil {
			t.Fatal(err)
		}
		st := cfWSClosedWithoutData(t, c)
		t.Logf("close status %v", st)
	})
	t.Run("packets not aligned to frames", func(t *testing.T) {
		c, _ := cfDialWS(t, url, "mqtt")
		rc := cfWSRaw(t, c)
		rc.write(connect[:5])
		rc.write(connect[5:])
		ack := rc.expectType(packet.CONNACK)
		if ack[3] != 0 {
			t.Fatalf("CONNACK % x", ack)
		}
		two := append(packet.AppendPing(nil, packet.PINGREQ),
			packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 4, Subs: []packet.Subscription{{Filter: "ws/#", QoS: 1}}}, ft5)...)
		rc.write(two)
		rc.expect("D0 00")
		rc.expect("90 04 00 04 00 01")
	})
	t.Run("subprotocol mqtt", func(t *testing.T) {
		c, resp := cfDialWS(t, url, "foo", "mqtt")
		if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "mqtt" || c.Subprotocol() != "mqtt" {
			t.Fatalf("Sec-WebSocket-Protocol %q (conn %q), want mqtt", got, c.Subprotocol())
		}
		rc := cfWSRaw(t, c)
		rc.write(connect)
		if ack := rc.expectType(packet.CONNACK); ack[3] != 0 {
			t.Fatalf("CONNACK % x", ack)
		}
	})
	t.Run("no subprotocol refused", func(t *testing.T) {
		c, resp := cfDialWS(t, url)
		if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "" {
			t.Fatalf("Sec-WebSocket-Protocol %q for a client that offered none", got)
		}
		if st := cfWSClosedWithoutData(t, c); st != websocket.StatusPolicyViolation {
			t.Fatalf("close status %v, want %v", st, websocket.StatusPolicyViolation)
		}
	})
}
