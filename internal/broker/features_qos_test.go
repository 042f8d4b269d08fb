package broker_test

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// TestFtQoSEndToEnd311 publishes at QoS 0, 1 and 2 through paho.mqtt.golang to a QoS 2
// subscription and to a QoS 1 subscription: each message arrives once, at
// min(published QoS, granted QoS). [MQTT-3.3.5-1 3.1.1] [MQTT-3.8.4-6 3.1.1] [MQTT-4.3.1-1] [MQTT-4.3.2-1] [MQTT-4.3.3-1]
func TestFtQoSEndToEnd311(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub, in := ftPaho3(t, s.Addr, "qos-sub", nil)
	ftWait(t, sub.Subscribe("q2/#", 2, nil))
	ftWait(t, sub.Subscribe("q1/#", 1, nil))
	pub, _ := ftPaho3(t, s.Addr, "qos-pub", nil)
	for q := byte(0); q <= 2; q++ {
		ftWait(t, pub.Publish(fmt.Sprintf("q2/%d", q), q, false, fmt.Sprintf("m%d", q)))
		ftWait(t, pub.Publish(fmt.Sprintf("q1/%d", q), q, false, fmt.Sprintf("m%d", q)))
	}
	got := in.waitN(t, 6)
	want := map[string]byte{"q2/0": 0, "q2/1": 1, "q2/2": 2, "q1/0": 0, "q1/1": 1, "q1/2": 1}
	seen := map[string]int{}
	for _, m := range got {
		seen[m.Topic]++
		if q, ok := want[m.Topic]; !ok || m.QoS != q {
			t.Errorf("%s delivered at QoS %d, want %d", m.Topic, m.QoS, q)
		}
		if m.Retained || m.Duplicate {
			t.Errorf("%s: retained=%v dup=%v, want both false", m.Topic, m.Retained, m.Duplicate)
		}
	}
	for tp := range want {
		if seen[tp] != 1 {
			t.Errorf("%s delivered %d times, want once", tp, seen[tp])
		}
	}
	checkAlive(t, s.Addr)
}

// TestFtQoSEndToEnd5 is the same through paho.golang (MQTT 5), checking the publisher's
// PUBACK/PUBCOMP reason codes. [MQTT-3.3.4-? min QoS] [MQTT-3.8.4-8] [MQTT-4.3.2-1] [MQTT-4.3.3-1]
func TestFtQoSEndToEnd5(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub, in, _ := ftPaho5(t, s.Addr, "qos5-sub", nil, nil)
	ftPahoSub(t, sub, nil, paho.SubscribeOptions{Topic: "q2/#", QoS: 2}, paho.SubscribeOptions{Topic: "q1/#", QoS: 1})
	pub, _, _ := ftPaho5(t, s.Addr, "qos5-pub", nil, nil)
	for q := byte(0); q <= 2; q++ {
		for _, pre := range []string{"q2", "q1"} {
			r, err := pub.Publish(ftCtx(t), &paho.Publish{Topic: fmt.Sprintf("%s/%d", pre, q), QoS: q, Payload: []byte("x")})
			if err != nil {
				t.Fatalf("publish QoS %d: %v", q, err)
			}
			if q > 0 && r.ReasonCode != 0 {
				t.Errorf("publish QoS %d: reason %#x, want 0", q, r.ReasonCode)
			}
		}
	}
	got := in.waitN(t, 6)
	want := map[string]byte{"q2/0": 0, "q2/1": 1, "q2/2": 2, "q1/0": 0, "q1/1": 1, "q1/2": 1}
	seen := map[string]int{}
	for _, m := range got {
		seen[m.Topic]++
		if q := want[m.Topic]; m.QoS != q {
			t.Errorf("%s delivered at QoS %d, want %d", m.Topic, m.QoS, q)
		}
	}
	for tp := range want {
		if seen[tp] != 1 {
			t.Errorf("%s delivered %d times, want once", tp, seen[tp])
		}
	}
	checkAlive(t, s.Addr)
}

// TestFtQoS2ExactlyOnce sends a QoS 2 PUBLISH, then the same packet id again with DUP=1
// before PUBREL: both are answered with PUBREC, the subscriber gets one message; after
// PUBREL/PUBCOMP the same id starts a new message.
// [MQTT-4.3.3-9] [MQTT-4.3.3-10] [MQTT-4.3.3-11] (3.1.1: [MQTT-4.3.3-2])
func TestFtQoS2ExactlyOnce(t *testing.T) {
	ftVersions(t, func(t *testing.T, v byte) {
		s := startServer(t, broker.Config{})
		sub, _ := ftDial(t, s.Addr, v, "eo-sub", nil)
		sub.ftSub(v, "eo/t", 2)
		pub, _ := ftDial(t, s.Addr, v, "eo-pub", nil)
		p := &packet.Publish{QoS: 2, Topic: "eo/t", PacketID: 10, Payload: []byte("once")}
		pub.ftPublish(v, p)
		if a := pub.ftReadAck(v, packet.PUBREC); a.PacketID != 10 || a.Reason.IsError() {
			t.Fatalf("PUBREC %+v", a)
		}
		p.Dup = true
		pub.ftPublish(v, p)
		if a := pub.ftReadAck(v, packet.PUBREC); a.PacketID != 10 || a.Reason.IsError() {
			t.Fatalf("second PUBREC %+v", a)
		}
		// The subscriber gets it once, with QoS 2, and completes the flow.
		got := sub.ftReadPublish(v)
		if string(got.Payload) != "once" || got.QoS != 2 || got.Dup {
			t.Fatalf("delivered %+v", got)
		}
		sub.ftAck(v, packet.PUBREC, got.PacketID)
		if a := sub.ftReadAck(v, packet.PUBREL); a.PacketID != got.PacketID {
			t.Fatalf("PUBREL id %d, want %d [MQTT-4.3.3-4]", a.PacketID, got.PacketID)
		}
		sub.ftAck(v, packet.PUBCOMP, got.PacketID)
		sub.expectSilence(300 * time.Millisecond) // no duplicate delivery
		pub.ftAck(v, packet.PUBREL, 10)
		if a := pub.ftReadAck(v, packet.PUBCOMP); a.PacketID != 10 || a.Reason != 0 {
			t.Fatalf("PUBCOMP %+v", a)
		}
		// After PUBCOMP, the same id is a new message.
		p.Dup = false
		p.Payload = []byte("again")
		pub.ftPublish(v, p)
		pub.ftReadAck(v, packet.PUBREC)
		if got := sub.ftReadPublish(v); string(got.Payload) != "again" {
			t.Fatalf("delivered %q, want again", got.Payload)
		}
		checkAlive(t, s.Addr)
	})
}

// TestFtRedeliveryDup: a persistent-session subscriber receives a QoS 1 and a QoS 2
// message, acknowledges neither (the QoS 2 one only up to PUBREC), drops the TCP
// connection and reconnects without clean start: the QoS 1 PUBLISH is resent with DUP=1
// and the same packet id, the QoS 2 flow resumes with PUBREL.
// [MQTT-4.4.0-1] [MQTT-3.3.1-1] [MQTT-2.2.1-3]
func TestFtRedeliveryDup(t *testing.T) {
	ftVersions(t, func(t *testing.T, v byte) {
		s := startServer(t, broker.Config{})
		sub, _ := ftDial(t, s.Addr, v, "dup-sub", func(p *packet.Connect) { ftPersist(p, 60) })
		sub.ftSub(v, "dup/#", 2)
		pub, _ := ftDial(t, s.Addr, v, "dup-pub", nil)
		pub.ftPub1(v, &packet.Publish{QoS: 1, Topic: "dup/1", PacketID: 1, Payload: []byte("one")})
		m1 := sub.ftReadPublish(v)
		pub.ftPublish(v, &packet.Publish{QoS: 2, Topic: "dup/2", PacketID: 2, Payload: []byte("two")})
		pub.ftReadAck(v, packet.PUBREC)
		pub.ftAck(v, packet.PUBREL, 2)
		pub.ftReadAck(v, packet.PUBCOMP)
		m2 := sub.ftReadPublish(v)
		if m1.QoS != 1 || m2.QoS != 2 || m1.Dup || m2.Dup || m1.PacketID == 0 || m2.PacketID == 0 || m1.PacketID == m2.PacketID {
			t.Fatalf("first deliveries %+v %+v", m1, m2)
		}
		sub.ftAck(v, packet.PUBREC, m2.PacketID)
		sub.ftReadAck(v, packet.PUBREL)
		sub.nc.Close() // no DISCONNECT, no acks
		eventually(t, 5*time.Second, "subscriber offline", func() bool { return s.Stats().Connected == 1 })

		sub2 := dialRaw(t, s.Addr)
		cp := &packet.Connect{Version: v, KeepAlive: 60, ClientID: "dup-sub"}
		ftPersist(cp, 60)
		cp.CleanStart = false
		ack := sub2.ftConnect(cp)
		if ack.Reason != 0 || !ack.SessionPresent {
			t.Fatalf("CONNACK %+v, want session present [MQTT-3.2.2-2]", ack)
		}
		r1 := sub2.ftReadPublish(v)
		if !r1.Dup || r1.PacketID != m1.PacketID || string(r1.Payload) != "one" || r1.QoS != 1 {
			t.Fatalf("resent %+v, want DUP=1 id %d payload one", r1, m1.PacketID)
		}
		rel := sub2.ftReadAck(v, packet.PUBREL)
		if rel.PacketID != m2.PacketID {
			t.Fatalf("resent PUBREL id %d, want %d", rel.PacketID, m2.PacketID)
		}
		sub2.ftAck(v, packet.PUBACK, r1.PacketID)
		sub2.ftAck(v, packet.PUBCOMP, rel.PacketID)
		sub2.expectSilence(300 * time.Millisecond)
		checkAlive(t, s.Addr)
	})
}

// TestFtPacketIDs: unacknowledged QoS 1 deliveries to one client carry distinct non-zero
// packet ids; QoS 0 deliveries carry none. [MQTT-2.2.1-2] [MQTT-2.2.1-3] [MQTT-2.2.1-4]
func TestFtPacketIDs(t *testing.T) {
	ftVersions(t, func(t *testing.T, v byte) {
		s := startServer(t, broker.Config{})
		sub, _ := ftDial(t, s.Addr, v, "pid-sub", nil)
		sub.ftSub(v, "pid/#", 1)
		pub, _ := ftDial(t, s.Addr, v, "pid-pub", nil)
		seen := map[uint16]bool{}
		for i := range 5 {
			pub.ftPub1(v, &packet.Publish{QoS: 1, Topic: "pid/a", PacketID: 7, Payload: []byte{byte(i)}}) // the publisher reuses id 7 after each PUBACK
			m := sub.ftReadPublish(v)
			if m.PacketID == 0 || seen[m.PacketID] {
				t.Fatalf("delivery %d: packet id %d (seen %v)", i, m.PacketID, seen)
			}
			seen[m.PacketID] = true
		}
		pub.ftPublish(v, &packet.Publish{QoS: 0, Topic: "pid/a", Payload: []byte("q0")})
		b := sub.expectType(packet.PUBLISH)
		// QoS 0: topic length then topic then (5.0: properties) payload, no packet id.
		if b[0]&0x06 != 0 {
			t.Fatalf("QoS 0 delivery flags %#x", b[0])
		}
		checkAlive(t, s.Addr)
	})
}

// TestFtOrdering: messages from one publisher on one topic reach a subscriber in the
// order sent, at QoS 0, 1 and 2. [MQTT-4.6.0-5] [MQTT-4.6.0-6] (3.1.1 [MQTT-4.6.0-5])
func TestFtOrdering(t *testing.T) {
	const n = 100
	t.Run("v311", func(t *testing.T) {
		s := startServer(t, broker.Config{})
		sub, in := ftPaho3(t, s.Addr, "ord-sub", nil)
		ftWait(t, sub.Subscribe("ord/#", 2, nil))
		pub, _ := ftPaho3(t, s.Addr, "ord-pub", nil)
		var want []string
		for q := byte(0); q <= 2; q++ {
			var toks []mqtt.Token
			for i := range n {
				p := fmt.Sprintf("%d", i)
				toks = append(toks, pub.Publish(fmt.Sprintf("ord/%d", q), q, false, p)) // in flight together
				want = append(want, fmt.Sprintf("ord/%d=%s", q, p))
				if len(toks) == 30 { // stay within the broker's limit on QoS 2 awaiting PUBREL (32)
					for _, tok := range toks {
						ftWait(t, tok)
					}
					toks = toks[:0]
				}
			}
			for _, tok := range toks {
				ftWait(t, tok)
			}
		}
		eventually(t, 5*time.Second, "messages", func() bool { return len(in.get()) >= 3*n || !pub.IsConnected() })
		got := in.get()
		if len(got) < 3*n {
			t.Fatalf("got %d messages, publisher connected: %v", len(got), pub.IsConnected())
		}
		for q := byte(0); q <= 2; q++ {
			var g, w []string
			for _, m := range got {
				if m.Topic == fmt.Sprintf("ord/%d", q) {
					g = append(g, m.Topic+"="+m.Payload)
				}
			}
			for _, m := range want {
				if m[:5] == fmt.Sprintf("ord/%d", q) {
					w = append(w, m)
				}
			}
			if !slices.Equal(g, w) {
				t.Errorf("QoS %d order:\n got %v\nwant %v", q, g, w)
			}
		}
	})
	t.Run("v5", func(t *testing.T) {
		const n = 30 // within the server's Receive Maximum (32) [MQTT-3.3.4-7]
		s := startServer(t, broker.Config{})
		sub, _ := ftDial(t, s.Addr, packet.Version5, "ord5-sub", nil)
		sub.ftSub(packet.Version5, "ord/#", 2)
		pub, _ := ftDial(t, s.Addr, packet.Version5, "ord5-pub", nil)
		for q := byte(0); q <= 2; q++ {
			var buf []byte
			for i := range n {
				buf = packet.AppendPublish(buf, &packet.Publish{QoS: q, Topic: "ord/t", PacketID: uint16(i + 1), Payload: fmt.Appendf(nil, "%d-%d", q, i)}, packet.Version5)
			}
			pub.write(buf)
			for i, rels := 0, 0; i < n || rels < n && q == 2; {
				b := sub.ftRead(2 * time.Second)
				typ, flags, body := ftSplit(t, b)
				if typ == packet.PUBREL {
					var a packet.Ack
					if err := packet.DecodeAck(&a, typ, body, packet.Version5); err != nil {
						t.Fatal(err)
					}
					sub.ftAck(packet.Version5, packet.PUBCOMP, a.PacketID)
					rels++
					continue
				}
				var m packet.Publish
				if typ != packet.PUBLISH || packet.DecodePublish(&m, flags, body, packet.Version5) != nil {
					t.Fatalf("got % x, want a PUBLISH", b)
				}
				if want := fmt.Sprintf("%d-%d", q, i); string(m.Payload) != want {
					t.Fatalf("QoS %d: message %d is %q, want %q", q, i, m.Payload, want)
				}
				switch m.QoS {
				case 1:
					sub.ftAck(packet.Version5, packet.PUBACK, m.PacketID)
				case 2:
					sub.ftAck(packet.Version5, packet.PUBREC, m.PacketID)
				}
				i++
			}
			// Drain the publisher's acknowledgements.
			for i := range n {
				switch q {
				case 1:
					pub.ftReadAck(packet.Version5, packet.PUBACK)
				case 2:
					pub.ftReadAck(packet.Version5, packet.PUBREC)
					pub.ftAck(packet.Version5, packet.PUBREL, uint16(i+1))
				}
			}
			if q == 2 {
				for range n {
					pub.ftReadAck(packet.Version5, packet.PUBCOMP)
				}
			}
		}
		checkAlive(t, s.Addr)
	})
}

// TestFtQoS0SharedEncoding: QoS 0 deliveries share one encoding per message, protocol
// version and RETAIN flag (the first delivery encodes into its connection's buffer, the
// second into a cache on the message, the rest copy it). Asserted here is that each subscriber
// gets the right one: 3.1.1 and 5.0 subscribers of the same messages get every message
// intact and in order (1 byte to 9 KiB) with RETAIN 0, and the retained one reaches later
// subscribers of both versions with RETAIN 1. A slot mixed up between versions or RETAIN
// flags fails the decoding or the flag.
func TestFtQoS0SharedEncoding(t *testing.T) {
	s := startServer(t, broker.Config{})
	type sub struct {
		c *rawConn
		v byte
	}
	var subs []sub
	for i, v := range []byte{packet.Version311, packet.Version5, packet.Version311, packet.Version5, packet.Version311} {
		c, _ := ftDial(t, s.Addr, v, fmt.Sprintf("enc-sub-%d", i), nil)
		c.ftSub(v, "enc/#", 0)
		subs = append(subs, sub{c, v})
	}
	pub, _ := ftDial(t, s.Addr, packet.Version311, "enc-pub", nil)
	payload := func(i int) []byte { // sizes 1 B … 9 KiB, each message's bytes its own
		b := make([]byte, 1+i*i*4)
		for j := range b {
			b[j] = byte(i + j)
		}
		return b
	}
	const n = 48
	for i := range n {
		pub.ftPublish(packet.Version311, &packet.Publish{Topic: fmt.Sprintf("enc/%d", i%3), Payload: payload(i)})
	}
	for k, sb := range subs {
		for i := range n {
			p := sb.c.ftReadPublish(sb.v)
			if want := fmt.Sprintf("enc/%d", i%3); p.Topic != want || p.QoS != 0 || p.Retain || !slices.Equal(p.Payload, payload(i)) {
				t.Fatalf("subscriber %d, message %d: topic %q QoS %d retain %v, %d bytes; want %q, %d bytes",
					k, i, p.Topic, p.QoS, p.Retain, len(p.Payload), want, len(payload(i)))
			}
		}
	}
	pub.ftPublish(packet.Version311, &packet.Publish{Topic: "enc/state", Payload: []byte("armed"), Retain: true})
	for k, sb := range subs {
		if p := sb.c.ftReadPublish(sb.v); string(p.Payload) != "armed" || p.Retain {
			t.Fatalf("subscriber %d got %q retain %v, want armed, RETAIN 0 [MQTT-3.3.1-9]", k, p.Payload, p.Retain)
		}
	}
	for _, v := range []byte{packet.Version5, packet.Version311} {
		late, _ := ftDial(t, s.Addr, v, fmt.Sprintf("enc-late-%d", v), nil)
		late.ftSub(v, "enc/state", 0)
		if p := late.ftReadPublish(v); string(p.Payload) != "armed" || !p.Retain {
			t.Fatalf("late %d subscriber got %q retain %v, want the retained message", v, p.Payload, p.Retain)
		}
	}
	checkAlive(t, s.Addr)
}

// TestFtBurstReachesSubscriberOnOneCore: a publisher that sends QoS 0 messages without
// pause does not starve the subscriber's writer. On one core (GOMAXPROCS 1, as a broker
// pinned to a core runs), its reader lets others run after readerTurn publications; had it
// kept the core until the runtime preempted it, the subscriber's pending bytes would pass
// MaxPendingWrite (64 KiB here, about 850 messages) and the rest of the burst would
// be dropped, though the subscriber reads all the time. Every message must arrive, in
// order, and none be counted dropped.
func TestFtBurstReachesSubscriberOnOneCore(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := startServer(t, broker.Config{MaxPendingWrite: 64 << 10, PublishRate: -1})
	sub, _ := ftDial(t, s.Addr, packet.Version311, "turn-sub", nil)
	sub.ftSub(packet.Version311, "turn/#", 0)
	pub, _ := ftDial(t, s.Addr, packet.Version311, "turn-pub", nil)
	const n = 4000
	payload := func(i int) []byte { return fmt.Appendf(nil, "%06d%s", i, strings.Repeat("v", 58)) } // 64 bytes
	var burst []byte
	for i := range n {
		burst = packet.AppendPublish(burst, &packet.Publish{Topic: "turn/ecg", Payload: payload(i)}, packet.Version311)
	}
	wrote := make(chan error, 1)
	go func() {
		pub.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := pub.nc.Write(burst) // one write of 300 KB: the reader finds its socket full
		wrote <- err
	}()
	for i := range n {
		p, err := sub.readPacket(5 * time.Second)
		if err != nil {
			t.Fatalf("message %d of %d not delivered (%v); broker stats %+v", i, n, err, s.Stats())
		}
		_, flags, body := ftSplit(t, p)
		var got packet.Publish
		if err := packet.DecodePublish(&got, flags, body, packet.Version311); err != nil || !slices.Equal(got.Payload, payload(i)) {
			t.Fatalf("delivery %d: %q (%v), want message %d; broker stats %+v", i, got.Payload, err, i, s.Stats())
		}
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Dropped != 0 {
		t.Fatalf("%d messages dropped", st.Dropped)
	}
}

// TestFtWriteBuffersStayWithTheirConnection: connections write from pooled buffers, each
// given back only once nothing refers to it. Eight publishers send to eight subscribers at
// once, each pair on its own topic (even pairs QoS 0, odd QoS 1, with acknowledgements
// both ways): every subscriber must get exactly its own messages, in order, and every
// QoS 1 publisher its own PUBACKs. A buffer shared by two connections would mix them.
func TestFtWriteBuffersStayWithTheirConnection(t *testing.T) {
	s := startServer(t, broker.Config{})
	const pairs, n = 8, 300
	var subs, pubs [pairs]*rawConn
	for k := range pairs {
		subs[k], _ = ftDial(t, s.Addr, packet.Version5, fmt.Sprintf("wb-sub-%d", k), nil)
		subs[k].ftSub(packet.Version5, fmt.Sprintf("wb/%d", k), 1)
		pubs[k], _ = ftDial(t, s.Addr, packet.Version311, fmt.Sprintf("wb-pub-%d", k), nil)
	}
	payload := func(k, i int) []byte {
		return fmt.Appendf(nil, "%d:%d:%s", k, i, strings.Repeat(string(rune('a'+k)), i%97))
	}
	split := func(b []byte) (byte, []byte) { // flags and body of a whole packet
		i := 1
		for b[i]&0x80 != 0 {
			i++
		}
		return b[0] & 0x0f, b[i+1:]
	}
	errs := make(chan error, 2*pairs)
	for k := range pairs {
		qos := byte(k % 2)
		go func() {
			var b []byte
			for i := range n {
				p := packet.Publish{Topic: fmt.Sprintf("wb/%d", k), QoS: qos, Payload: payload(k, i)}
				if qos == 1 {
					p.PacketID = uint16(i + 1)
				}
				b = packet.AppendPublish(b, &p, packet.Version311)
			}
			pubs[k].nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := pubs[k].nc.Write(b); err != nil {
				errs <- fmt.Errorf("publisher %d: %w", k, err)
				return
			}
			for i := 0; qos == 1 && i < n; i++ {
				pk, err := pubs[k].readPacket(10 * time.Second)
				if err != nil {
					errs <- fmt.Errorf("publisher %d, PUBACK %d: %w", k, i+1, err)
					return
				}
				var a packet.Ack
				if _, body := split(pk); packet.Type(pk[0]>>4) != packet.PUBACK || packet.DecodeAck(&a, packet.PUBACK, body, packet.Version311) != nil || a.PacketID != uint16(i+1) {
					errs <- fmt.Errorf("publisher %d: got % x, want the PUBACK of %d", k, pk, i+1)
					return
				}
			}
			errs <- nil
		}()
		go func() {
			for i := range n {
				pk, err := subs[k].readPacket(10 * time.Second)
				if err != nil {
					errs <- fmt.Errorf("subscriber %d, message %d: %w", k, i, err)
					return
				}
				var p packet.Publish
				flags, body := split(pk)
				if packet.Type(pk[0]>>4) != packet.PUBLISH || packet.DecodePublish(&p, flags, body, packet.Version5) != nil ||
					p.Topic != fmt.Sprintf("wb/%d", k) || p.QoS != qos || !slices.Equal(p.Payload, payload(k, i)) {
					errs <- fmt.Errorf("subscriber %d, message %d: got % x", k, i, pk)
					return
				}
				if qos == 1 {
					subs[k].nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
					if _, err := subs[k].nc.Write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBACK, PacketID: p.PacketID}, packet.Version5)); err != nil {
						errs <- fmt.Errorf("subscriber %d: %w", k, err)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 2 * pairs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	checkAlive(t, s.Addr)
}
