package broker_test

// CASES §2.7 (QoS state machine, flow control, queues), §2.8 (AUTH) and §2.9 (resource
// exhaustion after authentication).

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

func TestAttackQoS(t *testing.T) {
	t.Run("T71_same_qos2_id_flooded_unread", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{PublishRate: -1}) // the flood itself, not the rate limit that would slow it
		clin := fxClin(t, s, false)
		c, _ := fxLogin(t, s, fxC4p1)
		const n = 10000 // scaled from 100,000
		one := unhex(t, "3C 0E 00 09 72 70 6D 2F 70 31 2F 68 72 00 01 78")
		done := make(chan error, 1)
		go func() { done <- atkWriteAll(c, bytes.Repeat(one, n)) }()
		werr := <-done
		recs, open := 0, true
		for recs < n {
			p, err := c.readPacket(2 * time.Second)
			if err != nil {
				open = false // disconnecting the flooder is allowed
				break
			}
			if !bytes.Equal(p, []byte{0x50, 2, 0, 1}) {
				t.Fatalf("got % x, want only PUBREC 50 02 00 01", p)
			}
			recs++
		}
		if werr == nil && open {
			c.send("62 02 00 01")
			c.expect("70 02 00 01")
		}
		// Exactly one delivery.
		p := atkParsePub(t, clin.expectType(packet.PUBLISH), false)
		if p.topic != "rpm/p1/hr" || string(p.body) != "x" {
			t.Fatalf("delivered %q %q", p.topic, p.body)
		}
		if p.qos == 1 {
			clin.write([]byte{0x40, 2, byte(p.id >> 8), byte(p.id)})
		}
		clin.expectSilence(fxSilence)
		fxAlive(t, s)
	})

	t.Run("T72_qos2_without_pubrel_beyond_receive_maximum", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		fxClin(t, s, false)
		pub := func(id int, v5 bool) string {
			if v5 {
				return atkHex(t, 0x34, fmt.Sprintf("%s %04X 00 78", atkStr("rpm/p1/hr"), id))
			}
			return atkHex(t, 0x34, fmt.Sprintf("%s %04X 78", atkStr("rpm/p1/hr"), id))
		}
		for _, v5 := range []bool{true, false} {
			conn := fxC4p1
			if v5 {
				conn = fxC5p1
			}
			c, _ := fxLogin(t, s, conn)
			if v5 {
				c.send("34 0F 00 09 72 70 6D 2F 70 31 2F 68 72 00 01 00 78")
			} else {
				c.send(pub(1, false))
			}
			for id := 2; id <= 33; id++ {
				c.send(pub(id, v5))
			}
			for id := 1; id <= 32; id++ {
				p := atkRead(t, c, 2*time.Second)
				if p[0] != 0x50 || int(p[2])<<8|int(p[3]) != id || len(p) > 4 && p[4] >= 0x80 {
					t.Fatalf("v5=%v: got % x, want PUBREC for %d", v5, p, id)
				}
			}
			if v5 {
				atkClosed(t, c, 2*time.Second, atkDisc(0x93))
			} else {
				atkClosed(t, c, 2*time.Second)
			}
		}
		// Positive control: released identifiers free the window.
		c, _ := fxLogin(t, s, fxC5p1)
		for id := 1; id <= 32; id++ {
			c.send(pub(id, true))
			c.expectType(packet.PUBREC)
		}
		c.send("62 02 00 01")
		c.expect("70 02 00 01")
		c.send(pub(33, true))
		if p := c.expectType(packet.PUBREC); p[3] != 33 {
			t.Fatalf("got % x", p)
		}
		fxAlive(t, s)
	})

	for _, v5 := range []bool{false, true} {
		t.Run(fmt.Sprintf("T75_packet_identifier_exhaustion/v5=%v", v5), func(t *testing.T) {
			s, _ := fxStart(t, broker.Config{})
			window := 32
			var clin *rawConn
			if v5 {
				window = 5
				cn := &packet.Connect{Version: 5, CleanStart: true, KeepAlive: 60, ClientID: "c", HasUser: true, Username: "clin",
					HasPass: true, Password: []byte("pwc")}
				cn.Props.ReceiveMaximum = 5
				cn.Props.Set(packet.PropReceiveMaximum)
				clin, _ = fxLoginB(t, s, packet.AppendConnect(nil, cn))
				clin.send(fxSUB5)
				clin.expect("90 04 00 01 00 01")
			} else {
				clin = fxClin(t, s, false)
			}
			p1, _ := fxLogin(t, s, fxC4p1)
			const n = 2000 // scaled from 70,000: past the window and the 1,000-message queue
			var buf []byte
			for i := range n {
				buf = append(buf, atkPacket(0x32, append(append(unhex(t, atkStr("rpm/p1/hr")), byte((i+1)>>8), byte(i+1)), 'x'))...)
			}
			done := make(chan error, 1)
			go func() { done <- atkWriteAll(p1, buf) }()
			for range n {
				if p := atkRead(t, p1, 5*time.Second); p[0] != 0x40 {
					t.Fatalf("publisher got % x", p)
				}
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			// Phase 1: clin never acknowledges: at most the window is in flight, ids distinct.
			inflight := map[uint16]bool{}
			total := 0
			for {
				b, err := clin.readPacket(fxSilence)
				if err != nil {
					break
				}
				p := atkParsePub(t, b, v5)
				if inflight[p.id] || p.id == 0 {
					t.Fatalf("packet identifier %d reused while in flight", p.id)
				}
				inflight[p.id] = true
				total++
			}
			if total == 0 || total > window {
				t.Fatalf("%d messages in flight, want 1..%d", total, window)
			}
			// Phase 2: acknowledge everything; the rest comes from the bounded queue.
			for id := range inflight {
				clin.write([]byte{0x40, 2, byte(id >> 8), byte(id)})
			}
			for {
				b, err := clin.readPacket(fxSilence)
				if err != nil {
					break
				}
				p := atkParsePub(t, b, v5)
				if p.dup || p.id == 0 {
					t.Fatalf("unexpected % x", b)
				}
				clin.write([]byte{0x40, 2, byte(p.id >> 8), byte(p.id)})
				total++
			}
			if total > window+1000 {
				t.Fatalf("%d messages delivered, want at most %d (window + queue)", total, window+1000)
			}
			t.Logf("%d of %d delivered", total, n)
			p1.send("C0 00")
			p1.expect("D0 00")
			fxAlive(t, s)
		})
	}

	t.Run("T76_slow_consumer", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{WriteTimeout: 2 * time.Second, PublishRate: -1})
		fxClin(t, s, false) // the slow consumer: subscribed to rpm/#, never reads again
		fast, _ := fxLoginB(t, s, fxConnect(4, true, "cfast", "clin", "pwc"))
		fast.send(atkHex(t, 0x82, "00 01 "+atkStr("rpm/#")+" 00 "+atkStr("rpm/p1/end")+" 01"))
		fast.expect("90 04 00 01 00 01")
		var marker atomic.Bool
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				b, err := fast.readPacket(10 * time.Second)
				if err != nil {
					return
				}
				if bytes.Contains(b, []byte("rpm/p1/end")) {
					marker.Store(true)
					return
				}
			}
		})
		p1, _ := fxLogin(t, s, fxC4p1)
		const n = 8000 // 1 KiB each: 8 MiB towards a reader that stopped
		payload := bytes.Repeat([]byte{'v'}, 1024)
		var buf []byte
		for i := range n {
			buf = append(buf, atkPacket(0x32, append(append(unhex(t, atkStr("rpm/p1/hr")), byte((i+1)>>8), byte(i+1)), payload...))...)
		}
		done := make(chan error, 1)
		go func() { done <- atkWriteAll(p1, buf) }()
		for range n { // the publisher is never blocked by the stalled subscriber
			if p := atkRead(t, p1, 5*time.Second); p[0] != 0x40 {
				t.Fatalf("publisher got % x", p)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		p1.send("30 0D 00 0A 72 70 6D 2F 70 31 2F 65 6E 64 78")
		p1.send("C0 00")
		p1.expect("D0 00")
		wg.Wait()
		if !marker.Load() {
			t.Fatal("the reading subscriber did not get the final message")
		}
		fxAlive(t, s)
	})

	t.Run("T77_server_to_client_packets_from_client", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		for _, h := range []string{"29 02 00 01", "20 02 00 00", "90 03 00 01 00", "B0 02 00 01", "D0 00"} {
			c, _ := fxLogin(t, s, fxC4p1)
			c.send(h)
			atkClosed(t, c, 2*time.Second)
		}
		for _, h := range []string{"29 02 00 01", "20 03 00 00 00", "90 04 00 01 00 00", "B0 03 00 01 00", "D0 00"} {
			c, _ := fxLogin(t, s, fxC5p1)
			c.send(h)
			atkClosed(t, c, 2*time.Second, atkDisc(0x81, 0x82))
		}
		fxAlive(t, s)
	})
}

func TestAttackAuth(t *testing.T) {
	t.Run("T79_auth_before_connect", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		for _, h := range []string{"F0 00", "F0 02 18 00", "F0 0C 18 0A 15 00 07 50 4C 41 49 4E 2D 58"} {
			c := dialRaw(t, s.Addr)
			c.send(h)
			atkClosed(t, c, 2*time.Second)
		}
		fxAlive(t, s)
	})

	t.Run("T80_auth_without_method", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		c, _ := fxLogin(t, s, fxC5p1)
		c.send("F0 00")
		atkClosed(t, c, 2*time.Second, atkDisc(0x82))
		c, _ = fxLogin(t, s, fxC5p1)
		c.send("F0 0C 19 0A 15 00 07 50 4C 41 49 4E 2D 58") // re-authenticate with a method the CONNECT never named
		atkClosed(t, c, 2*time.Second, atkDisc(0x82))
		c, _ = fxLogin(t, s, fxC4p1)
		c.send("F0 00")
		atkClosed(t, c, 2*time.Second)
		fxAlive(t, s)
	})

	t.Run("T81_malformed_auth_method_switch", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		c, _ := fxLogin(t, s, fxC5p1)
		c.send("F1 00")
		atkClosed(t, c, 2*time.Second, atkDisc(0x81, 0x82))
		scram := func() *rawConn {
			cn := &packet.Connect{Version: 5, CleanStart: true, KeepAlive: 60, ClientID: "p1", HasUser: true, Username: "p1dev"}
			cn.Props.AuthMethod, cn.Props.AuthData = fxAuthMethod, []byte("pw:pw1")
			cn.Props.Set(packet.PropAuthMethod)
			cn.Props.Set(packet.PropAuthData)
			c, _ := fxLoginB(t, s, packet.AppendConnect(nil, cn))
			return c
		}
		c = scram()
		c.send("F0 0A 19 08 15 00 05 4F 54 48 45 52")
		atkClosed(t, c, 2*time.Second, atkDisc(0x82))
		// Malformed AUTH bodies after an enhanced-auth CONNECT.
		for _, h := range []string{
			"F0 01 19",                   // reason without property length
			"F0 03 19 05 15",             // property length beyond the packet
			"F0 02 42 00",                // reason code not valid for AUTH
			"F0 06 19 04 15 00 05 4F 54", // truncated method string
		} {
			c = scram()
			c.send(h)
			atkClosed(t, c, 2*time.Second, atkDisc(0x81, 0x82))
		}
		// An unsupported method at CONNECT is refused.
		cn := &packet.Connect{Version: 5, CleanStart: true, KeepAlive: 60, ClientID: "p1", HasUser: true, Username: "p1dev",
			HasPass: true, Password: []byte("pw1")}
		cn.Props.AuthMethod = "OTHER"
		cn.Props.Set(packet.PropAuthMethod)
		c = dialRaw(t, s.Addr)
		c.write(packet.AppendConnect(nil, cn))
		atkClosed(t, c, 2*time.Second, atkExact(t, "20 03 00 8C 00"))
		fxAlive(t, s)
	})

	t.Run("T83_enhanced_auth_round_cap", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{ConnectTimeout: 3 * time.Second})
		cn := &packet.Connect{Version: 5, CleanStart: true, KeepAlive: 60, ClientID: "p1", HasUser: true, Username: "p1dev"}
		cn.Props.AuthMethod, cn.Props.AuthData = fxAuthMethod, []byte("hello")
		cn.Props.Set(packet.PropAuthMethod)
		cn.Props.Set(packet.PropAuthData)
		c := dialRaw(t, s.Addr)
		c.write(packet.AppendConnect(nil, cn))
		// Answer every server AUTH 0x18 with junk: the exchange ends after a bounded number of
		// rounds (or at the CONNECT deadline) with a refusal, never a success.
		rounds := 0
		for {
			p, err := c.readPacket(4 * time.Second)
			if err != nil {
				t.Fatalf("after %d rounds: %v, want a refusing CONNACK", rounds, err)
			}
			if p[0] == 0x20 {
				if !atkConnack(0x87, 0x8C, 0x86)(p) {
					t.Fatalf("after %d rounds: CONNACK % x, want 87 or 8C", rounds, p)
				}
				atkClosed(t, c, 2*time.Second)
				break
			}
			if !atkIsReason(p, 0xF0, []byte{0x18}) {
				t.Fatalf("got % x, want AUTH 0x18", p)
			}
			rounds++
			if rounds > 50 {
				t.Fatalf("more than %d authentication rounds", rounds-1)
			}
			junk := fmt.Sprintf("junk-%d", rounds)
			c.write(atkPacket(0xF0, unhex(t, fmt.Sprintf("18 %02X 15 %s 16 %s", 3+len(fxAuthMethod)+3+len(junk), atkStr(fxAuthMethod), atkStr(junk)))))
		}
		t.Logf("refused after %d rounds", rounds)
		// Changing the method, or answering with another reason code, mid-exchange is refused.
		for _, ans := range []string{
			fmt.Sprintf("18 %02X 15 %s 16 %s", 3+5+3+6, atkStr("OTHER"), atkStr("pw:pw1")),
			fmt.Sprintf("19 %02X 15 %s 16 %s", 3+len(fxAuthMethod)+3+6, atkStr(fxAuthMethod), atkStr("pw:pw1")),
			fmt.Sprintf("00 %02X 15 %s 16 %s", 3+len(fxAuthMethod)+3+6, atkStr(fxAuthMethod), atkStr("pw:pw1")),
		} {
			c = dialRaw(t, s.Addr)
			c.write(packet.AppendConnect(nil, cn))
			atkRead(t, c, 2*time.Second)
			c.write(atkPacket(0xF0, unhex(t, ans)))
			atkClosed(t, c, 2*time.Second, atkConnack(0x81, 0x82, 0x87, 0x8C))
		}
		// A correct answer after a challenge succeeds (positive control).
		cn.ClientID = "p1b"
		c = dialRaw(t, s.Addr)
		c.write(packet.AppendConnect(nil, cn))
		if p := atkRead(t, c, 2*time.Second); !atkIsReason(p, 0xF0, []byte{0x18}) {
			t.Fatalf("got % x, want AUTH 0x18", p)
		}
		c.write(atkPacket(0xF0, unhex(t, fmt.Sprintf("18 %02X 15 %s 16 %s", 3+len(fxAuthMethod)+3+6, atkStr(fxAuthMethod), atkStr("pw:pw1")))))
		if p := atkRead(t, c, 2*time.Second); p[0] != 0x20 || p[3] != 0 {
			t.Fatalf("CONNACK % x, want success", p)
		}
		fxAlive(t, s)
	})
}

func TestAttackResources(t *testing.T) {
	userProps := func(n int) []byte { return bytes.Repeat(unhex(t, "26 00 01 6B 00 01 76"), n) }
	bigConnect := func() []byte {
		body := unhex(t, "00 04 4D 51 54 54 05 C2 00 3C F0 A2 04")
		body = append(body, userProps(10000)...)
		body = append(body, unhex(t, "00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31")...)
		return atkPacket(0x10, body)
	}

	t.Run("T84_many_user_properties", func(t *testing.T) {
		b := bigConnect()
		if len(b) != 70033 || !bytes.HasPrefix(b, unhex(t, "10 8D A3 04 00 04 4D 51 54 54 05 C2 00 3C F0 A2 04 26 00 01")) {
			t.Fatalf("CONNECT is %d bytes: % x", len(b), b[:20])
		}
		s, _ := fxStart(t, broker.Config{})
		c := dialRaw(t, s.Addr)
		go atkWriteAll(c, b)
		atkClosed(t, c, 2*time.Second, atkExact(t, "20 03 00 95 00"))
		fxAlive(t, s)

		// With the pre-auth cap raised the CONNECT is processed, and a PUBLISH with 30,000
		// User Properties (within 256 KiB) fans out.
		s, _ = fxStart(t, broker.Config{PreAuthMaxPacketSize: 128 << 10})
		const subs = 10 // scaled from 100
		var rcv []*rawConn
		for i := range subs {
			r, _ := fxLoginB(t, s, fxConnect(5, true, fmt.Sprintf("c%d", i), "clin", "pwc"))
			r.send(fxSUB5)
			r.expect("90 04 00 01 00 01")
			rcv = append(rcv, r)
		}
		c = dialRaw(t, s.Addr)
		c.write(b)
		if ack := atkRead(t, c, 2*time.Second); ack[0] != 0x20 || ack[3] != 0 {
			t.Fatalf("CONNACK % x", ack)
		}
		body := append(unhex(t, atkStr("rpm/p1/hr")+" 00 01"), atkPacket(0, make([]byte, 210000))[1:4]...) // property length 210,000
		body = append(body, userProps(30000)...)
		body = append(body, 'x')
		pub := atkPacket(0x32, body)
		if len(pub) > 256<<10 {
			t.Fatalf("publish is %d bytes", len(pub))
		}
		c.write(pub)
		c.expect("40 02 00 01")
		for _, r := range rcv {
			p, err := r.readPacket(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			q := atkParsePub(t, p, true)
			if q.topic != "rpm/p1/hr" || string(q.body) != "x" || bytes.Count(q.props, []byte{0x26, 0, 1, 'k'}) != 30000 {
				t.Fatalf("delivered %q %q with %d property bytes", q.topic, q.body, len(q.props))
			}
		}
		fxAlive(t, s)
	})

	for _, v5 := range []bool{false, true} {
		t.Run(fmt.Sprintf("T85_subscription_flood/v5=%v", v5), func(t *testing.T) {
			s, _ := fxStart(t, broker.Config{})
			conn, refused := fxC4p1, byte(0x80)
			if v5 {
				conn, refused = fxC5p1, 0x97
			}
			c, _ := fxLogin(t, s, conn)
			for pkt := range 3 { // scaled from 100 packets
				body := []byte{0, byte(pkt + 1)}
				if v5 {
					body = append(body, 0)
				}
				for i := range 1000 {
					body = append(body, unhex(t, atkStr(fmt.Sprintf("rpm/p1/x/%d", pkt*1000+i))+" 01")...)
				}
				c.write(atkPacket(0x82, body))
				ack := atkRead(t, c, 5*time.Second)
				_, off := atkVBI(ack[1:])
				hdr := 1 + off + 2
				if v5 {
					hdr++ // property length 0
				}
				codes := ack[hdr:]
				if ack[0] != 0x90 || len(codes) != 1000 {
					t.Fatalf("SUBACK % x...", ack[:8])
				}
				for i, rc := range codes {
					want := refused
					if pkt*1000+i < 100 {
						want = 1
					}
					if rc != want {
						t.Fatalf("packet %d filter %d: reason %#x, want %#x", pkt, i, rc, want)
					}
				}
			}
			if n := s.Stats().Subscriptions; n != 100 {
				t.Fatalf("%d subscriptions, want 100", n)
			}
			c.send("C0 00")
			c.expect("D0 00")
			fxAlive(t, s)
		})
	}

	// T88 (hostile bridge peer): vitalmq has no bridge. T89-T93 (fail-closed configuration and
	// transport) are tested where configuration lives, in cmd/vitalmq: TestServeRefusesBadConfig
	// and TestEmbeddedDefaultsParse (T92), TestACLReload (T91), TestTLSRefusesOldVersions and
	// TestSecureDefaults (T93); internal/auth's policy tests cover T89 (no rule, no access).
}
