package broker_test

import (
	"sync"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
	"vitalmq/internal/state"
)

// Will Message Expiry must count from publication of the will, not from CONNECT.
func TestReviewWillExpiryFromConnect(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub, _ := ftDial(t, s.Addr, packet.Version5, "rv-sub", nil)
	sub.ftSub(packet.Version5, "rv/will", 0)
	a, _ := ftDial(t, s.Addr, packet.Version5, "rv-a", func(p *packet.Connect) {
		p.HasWill = true
		p.Will.Topic = "rv/will"
		p.Will.Payload = []byte("gone")
		p.Will.Props.MessageExpiry = 1
		p.Will.Props.Set(packet.PropMessageExpiry)
	})
	time.Sleep(1500 * time.Millisecond)
	a.nc.Close()
	b, err := sub.readPacket(2 * time.Second)
	if err != nil {
		t.Fatalf("will not delivered: %v", err)
	}
	t.Logf("got % x", b)
}

// A DISCONNECT with an error reason (0x80) must not discard the will.
func TestReviewDisconnectErrorKeepsWill(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub, _ := ftDial(t, s.Addr, packet.Version5, "rv-sub", nil)
	sub.ftSub(packet.Version5, "rv/will", 0)
	a, _ := ftDial(t, s.Addr, packet.Version5, "rv-a", func(p *packet.Connect) {
		p.HasWill = true
		p.Will.Topic = "rv/will"
		p.Will.Payload = []byte("gone")
	})
	a.write(packet.AppendDisconnect(nil, &packet.Disconnect{Reason: packet.UnspecifiedError}, packet.Version5))
	if _, err := sub.readPacket(2 * time.Second); err != nil {
		t.Fatalf("will not delivered after DISCONNECT 0x80: %v", err)
	}
}

// A 3.1.1 client disconnected for exceeding ReceiveMaximum resends its QoS 2 PUBLISH
// (same id, DUP) on the resumed session: it must be delivered.
func TestReviewQoS2OverReceiveMaxLost(t *testing.T) {
	s := startServer(t, broker.Config{ReceiveMaximum: 2})
	sub, _ := ftDial(t, s.Addr, packet.Version311, "rv-sub", nil)
	sub.ftSub(packet.Version311, "rv/t", 2)
	v := packet.Version311
	mod := func(p *packet.Connect) { p.CleanStart = false }
	a, _ := ftDial(t, s.Addr, v, "rv-pub", mod)
	for id := uint16(1); id <= 3; id++ {
		a.ftPublish(v, &packet.Publish{QoS: 2, PacketID: id, Topic: "rv/t", Payload: []byte{byte(id)}})
	}
	for {
		if _, err := a.readPacket(2 * time.Second); err != nil {
			if isTimeout(err) {
				t.Fatal("not closed")
			}
			break
		}
	}
	a2, ack := ftDial(t, s.Addr, v, "rv-pub", mod)
	t.Logf("session present %v", ack.SessionPresent)
	// As a client resumes: first the releases it owes, then the refused publication again.
	for id := uint16(1); id <= 2; id++ {
		a2.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBREL, PacketID: id}, v))
		a2.ftReadAck(v, packet.PUBCOMP)
	}
	a2.ftPublish(v, &packet.Publish{QoS: 2, PacketID: 3, Dup: true, Topic: "rv/t", Payload: []byte{3}})
	a2.ftReadAck(v, packet.PUBREC) // not taken for a duplicate of the refused one: it was never accepted
	a2.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBREL, PacketID: 3}, v))
	got := map[byte]bool{}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && len(got) < 3 {
		b, err := sub.readPacket(time.Until(deadline))
		if err != nil {
			break
		}
		typ, flags, body := ftSplit(t, b)
		if typ != packet.PUBLISH {
			continue
		}
		var p packet.Publish
		if err := packet.DecodePublish(&p, flags, body, v); err != nil {
			t.Fatal(err)
		}
		got[p.Payload[0]] = true
		sub.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBREC, PacketID: p.PacketID}, v))
	}
	if !got[3] {
		t.Fatalf("message 3 lost; got %v", got)
	}
}

// PUBACKs must be sent in the order the PUBLISHes were received [MQTT-4.6.0-2].
func TestReviewPubackOrder(t *testing.T) {
	db, err := state.Open(t.TempDir(), state.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := startServer(t, broker.Config{Persister: db})
	sub, _ := ftDial(t, s.Addr, packet.Version5, "rv-sub", func(p *packet.Connect) {
		p.CleanStart = false
		p.Props.SessionExpiry = 3600
		p.Props.Set(packet.PropSessionExpiry)
	})
	sub.ftSub(packet.Version5, "p/#", 1)
	a, _ := ftDial(t, s.Addr, packet.Version5, "rv-pub", nil)
	var buf []byte
	buf = packet.AppendPublish(buf, &packet.Publish{QoS: 1, PacketID: 1, Topic: "p/a", Payload: []byte("x")}, packet.Version5)
	buf = packet.AppendPublish(buf, &packet.Publish{QoS: 1, PacketID: 2, Topic: "q/a", Payload: []byte("x")}, packet.Version5)
	a.write(buf)
	first := a.ftReadAck(packet.Version5, packet.PUBACK)
	second := a.ftReadAck(packet.Version5, packet.PUBACK)
	if first.PacketID != 1 {
		t.Fatalf("PUBACK order %d, %d", first.PacketID, second.PacketID)
	}
}

// Two clients with one client id connecting at once: at most one may stay connected.
func TestReviewAttachRace(t *testing.T) {
	s := startServer(t, broker.Config{ConnectionRate: 1e6, ConnectionBurst: 1e6, MaxConnectionsPerAddress: 1e6})
	for round := range 60 { // the race reproduced within a few dozen rounds before the fix
		var wg sync.WaitGroup
		conns := make([]*rawConn, 2)
		for i := range conns {
			wg.Go(func() {
				c := dialRaw(t, s.Addr)
				c.write(packet.AppendConnect(nil, &packet.Connect{Version: packet.Version311, CleanStart: false, KeepAlive: 60, ClientID: "rv-dup"}))
				conns[i] = c
			})
		}
		wg.Wait()
		time.Sleep(30 * time.Millisecond)
		open := 0
		for _, c := range conns {
			for {
				b, err := c.readPacket(50 * time.Millisecond)
				if err != nil {
					// timeout means still open, EOF means closed
					if !isTimeout(err) {
						break
					}
					open++
					break
				}
				_ = b
			}
		}
		if open > 1 {
			time.Sleep(time.Second)
			still := 0
			for _, c := range conns {
				if _, err := c.readPacket(100 * time.Millisecond); err != nil && isTimeout(err) {
					still++
				}
			}
			t.Logf("after 1s: %d still open; server Connected=%d Sessions=%d", still, s.Stats().Connected, s.Stats().Sessions)
			t.Fatalf("round %d: %d connections share one client id", round, open)
		}
		for _, c := range conns {
			c.nc.Close()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isTimeout(err error) bool {
	type to interface{ Timeout() bool }
	e, ok := err.(to)
	return ok && e.Timeout()
}

// A QoS 2 publication answered with PUBREC 0x97 (every matching queue full) ends the flow:
// its packet id must not stay awaiting PUBREL, or the next message with that id is lost.
func TestReviewQoS2QuotaExceededLeavesId(t *testing.T) {
	s := startServer(t, broker.Config{MaxQueuedMessages: 1})
	v := packet.Version5
	persistent := func(p *packet.Connect) {
		p.CleanStart = false
		p.Props.SessionExpiry = 3600
		p.Props.Set(packet.PropSessionExpiry)
	}
	sub, _ := ftDial(t, s.Addr, v, "rv-sub", persistent)
	sub.ftSub(v, "rv/t", 2)
	sub.nc.Close()
	time.Sleep(100 * time.Millisecond)
	pub, _ := ftDial(t, s.Addr, v, "rv-pub", nil)
	pub.ftPublish(v, &packet.Publish{QoS: 2, PacketID: 1, Topic: "rv/t", Payload: []byte{1}})
	if a := pub.ftReadAck(v, packet.PUBREC); a.Reason != 0 {
		t.Fatalf("first PUBREC %#x", byte(a.Reason))
	}
	pub.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBREL, PacketID: 1}, v))
	pub.ftReadAck(v, packet.PUBCOMP)
	pub.ftPublish(v, &packet.Publish{QoS: 2, PacketID: 2, Topic: "rv/t", Payload: []byte{2}})
	a := pub.ftReadAck(v, packet.PUBREC)
	t.Logf("second PUBREC reason %#x", byte(a.Reason))
	// subscriber drains its queue
	sub2, _ := ftDial(t, s.Addr, v, "rv-sub", persistent)
	p := sub2.ftReadPublish(v)
	sub2.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBREC, PacketID: p.PacketID}, v))
	sub2.ftReadAck(v, packet.PUBREL)
	sub2.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBCOMP, PacketID: p.PacketID}, v))
	// the publisher reuses id 2 for a new message (the previous flow ended with 0x97)
	pub.ftPublish(v, &packet.Publish{QoS: 2, PacketID: 2, Topic: "rv/t", Payload: []byte{3}})
	a = pub.ftReadAck(v, packet.PUBREC)
	t.Logf("third PUBREC reason %#x", byte(a.Reason))
	b, err := sub2.readPacket(time.Second)
	if err != nil {
		t.Fatalf("message 3 not delivered: %v", err)
	}
	t.Logf("got % x", b)
}

// A session resumed with a smaller Receive Maximum gets no more unacknowledged QoS 1
// messages than it allows; the rest follow, still marked DUP, as it acknowledges
// [MQTT-3.3.4-7] [MQTT-3.3.1-1].
func TestReviewResumeRespectsReceiveMaximum(t *testing.T) {
	s := startServer(t, broker.Config{})
	connect := rqResume(t, s.Addr, "rq-sub")
	sub, _ := connect(10)
	sub.ftSub(packet.Version5, "rq/t", 1)
	pub, _ := ftDial(t, s.Addr, packet.Version5, "rq-pub", nil)
	for i := range 5 {
		pub.ftPublish(packet.Version5, &packet.Publish{QoS: 1, PacketID: uint16(i + 1), Topic: "rq/t", Payload: []byte{byte(i)}})
		pub.ftReadAck(packet.Version5, packet.PUBACK)
	}
	for range 5 {
		sub.expectType(packet.PUBLISH) // received, never acknowledged
	}
	sub.nc.Close()

	sub, ack := connect(2)
	if !ack.SessionPresent {
		t.Fatal("session not resumed")
	}
	var got []packet.Publish
	read := func() bool {
		b, err := sub.readPacket(300 * time.Millisecond)
		if err != nil {
			return false
		}
		var p packet.Publish
		if err := packet.DecodePublish(&p, b[0]&0x0f, b[2:], packet.Version5); err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
		return true
	}
	for read() {
	}
	if len(got) != 2 {
		t.Fatalf("%d messages in flight after resuming with Receive Maximum 2, want 2", len(got))
	}
	for len(got) < 5 {
		sub.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBACK, PacketID: got[len(got)-2].PacketID}, packet.Version5))
		if !read() {
			t.Fatalf("no next message after an acknowledgement (have %d)", len(got))
		}
	}
	for i, p := range got {
		if !p.Dup || p.Payload[0] != byte(i) {
			t.Fatalf("message %d: dup %v payload %v, want a DUP re-send of %d in order", i, p.Dup, p.Payload, i)
		}
	}
}

// rqResume returns a function that connects id (5.0, persistent session) with a Receive Maximum.
func rqResume(t *testing.T, addr, id string) func(rm uint16) (*rawConn, *packet.Connack) {
	return func(rm uint16) (*rawConn, *packet.Connack) {
		return ftDial(t, addr, packet.Version5, id, func(p *packet.Connect) {
			p.CleanStart = false
			p.Props.SessionExpiry, p.Props.ReceiveMaximum = 60, rm
			p.Props.Set(packet.PropSessionExpiry)
			p.Props.Set(packet.PropReceiveMaximum)
		})
	}
}

// [MQTT-4.9.0-2] [MQTT-3.3.4-9] QoS 2 messages awaiting PUBCOMP count against the client's
// new Receive Maximum on resume: with two of them outstanding and Receive Maximum 2, only
// the PUBRELs are re-sent; the unacknowledged QoS 1 messages wait for a PUBCOMP.
func TestReviewResumeReceiveMaximumCountsReleased(t *testing.T) {
	s := startServer(t, broker.Config{})
	connect := rqResume(t, s.Addr, "rq2-sub")
	sub, _ := connect(10)
	sub.ftSub(packet.Version5, "rq2/two", 2)
	pub, _ := ftDial(t, s.Addr, packet.Version5, "rq2-pub", nil)
	for i := range 2 {
		pub.ftPublish(packet.Version5, &packet.Publish{QoS: 2, PacketID: uint16(i + 1), Topic: "rq2/two", Payload: []byte{byte(i)}})
		pub.ftReadAck(packet.Version5, packet.PUBREC)
		pub.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBREL, PacketID: uint16(i + 1)}, packet.Version5))
		pub.ftReadAck(packet.Version5, packet.PUBCOMP)
		p := sub.ftReadPublish(packet.Version5)
		sub.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBREC, PacketID: p.PacketID}, packet.Version5))
		sub.expectType(packet.PUBREL) // never completed
	}
	sub.ftSub(packet.Version5, "rq2/one", 1)
	for i := range 2 {
		pub.ftPublish(packet.Version5, &packet.Publish{QoS: 1, PacketID: uint16(i + 10), Topic: "rq2/one", Payload: []byte{byte(i)}})
		pub.ftReadAck(packet.Version5, packet.PUBACK)
		sub.expectType(packet.PUBLISH) // never acknowledged
	}
	sub.nc.Close()

	sub, ack := connect(2)
	if !ack.SessionPresent {
		t.Fatal("session not resumed")
	}
	var rels []uint16
	for range 2 {
		b := sub.expectType(packet.PUBREL)
		rels = append(rels, uint16(b[2])<<8|uint16(b[3]))
	}
	sub.expectSilence(300 * time.Millisecond) // no PUBLISH: the window is full
	sub.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBCOMP, PacketID: rels[0]}, packet.Version5))
	if p := sub.ftReadPublish(packet.Version5); !p.Dup || p.Payload[0] != 0 {
		t.Fatalf("after a PUBCOMP got dup=%v payload %v, want the first QoS 1 message re-sent", p.Dup, p.Payload)
	}
	sub.expectSilence(300 * time.Millisecond)
}
