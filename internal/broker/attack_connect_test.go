package broker_test

// CASES §2.2: CONNECT, identity and session establishment.

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

func TestAttackConnect(t *testing.T) {
	t.Run("T13_wrong_protocol_name", func(t *testing.T) {
		s, a := fxStart(t, broker.Config{})
		c := dialRaw(t, s.Addr)
		c.send("10 0E 00 04 4D 51 54 55 04 02 00 3C 00 02 70 31")
		atkClosed(t, c, 2*time.Second)
		if n := s.Stats().Sessions; n != 0 {
			t.Errorf("sessions = %d, want 0", n)
		}
		if n := a.authCalls.Load(); n != 0 {
			t.Errorf("authenticator called %d times for a non-MQTT CONNECT", n)
		}
		fxAlive(t, s)
	})

	t.Run("T14_unsupported_protocol_level", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		for _, h := range []string{
			"10 0E 00 04 4D 51 54 54 06 02 00 3C 00 02 70 31",
			"10 0E 00 04 4D 51 54 54 02 02 00 3C 00 02 70 31",
			"10 0E 00 04 4D 51 54 54 00 02 00 3C 00 02 70 31",
			"10 0E 00 04 4D 51 54 54 FF 02 00 3C 00 02 70 31",
		} {
			c := dialRaw(t, s.Addr)
			c.send(h)
			c.expect("20 02 00 01") // [MQTT-3.1.2-2]: return code 1, in the 3.1.1 form whatever the level
			c.expectClosed(2 * time.Second)
		}
		fxAlive(t, s)
	})

	t.Run("T15_reserved_connect_flag", func(t *testing.T) {
		s, a := fxStart(t, broker.Config{})
		c := dialRaw(t, s.Addr)
		c.send("10 0E 00 04 4D 51 54 54 04 03 00 3C 00 02 70 31")
		atkClosed(t, c, 2*time.Second)
		c = dialRaw(t, s.Addr) // 5.0: a CONNACK 0x81 first is allowed
		c.send("10 0F 00 04 4D 51 54 54 05 03 00 3C 00 00 02 70 31")
		atkClosed(t, c, 2*time.Second, atkExact(t, "20 03 00 81 00"))
		if n := a.authCalls.Load(); n != 0 {
			t.Errorf("authenticator called %d times", n)
		}
		fxAlive(t, s)
	})

	t.Run("T16_password_without_username", func(t *testing.T) {
		s, a := fxStart(t, broker.Config{})
		c := dialRaw(t, s.Addr)
		c.send("10 13 00 04 4D 51 54 54 04 42 00 3C 00 02 70 31 00 03 70 77 31")
		atkClosed(t, c, 2*time.Second)
		if n := a.authCalls.Load(); n != 0 {
			t.Errorf("authenticator called %d times, want 0", n)
		}
		fxAlive(t, s)
	})

	t.Run("T17_invalid_will_flags", func(t *testing.T) {
		s, a := fxStart(t, broker.Config{})
		for _, h := range []string{
			"10 14 00 04 4D 51 54 54 04 1E 00 3C 00 02 70 31 00 01 77 00 01 78", // (a) will QoS 3
			"10 0E 00 04 4D 51 54 54 04 0A 00 3C 00 02 70 31",                   // (b) will QoS 1, no will flag
			"10 0E 00 04 4D 51 54 54 04 22 00 3C 00 02 70 31",                   // will retain, no will flag
		} {
			c := dialRaw(t, s.Addr)
			c.send(h)
			atkClosed(t, c, 2*time.Second)
		}
		if n := a.authCalls.Load(); n != 0 {
			t.Errorf("authenticator called %d times", n)
		}
		fxAlive(t, s)
	})

	t.Run("T18_second_connect", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		const durableP1 = "10 1A 00 04 4D 51 54 54 04 C0 00 3C 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31"
		c, _ := fxLogin(t, s, durableP1)
		c.send("82 0D 00 01 00 08 72 70 6D 2F 70 31 2F 23 01")
		c.expect("90 03 00 01 01")
		c.send(durableP1)
		atkClosed(t, c, 2*time.Second)

		c5, _ := fxLogin(t, s, fxC5p2)
		c5.send(fxC5p2)
		atkClosed(t, c5, 2*time.Second, atkDisc(0x82))

		// The session is resumed once, with its subscription once: one message, one delivery.
		c = dialRaw(t, s.Addr)
		c.send(durableP1)
		c.expect("20 02 01 00")
		adm := fxAdmin(t, s, "adm")
		adm.send("30 0C 00 09 72 70 6D 2F 70 31 2F 68 72 78")
		c.expect("30 0C 00 09 72 70 6D 2F 70 31 2F 68 72 78")
		c.expectSilence(fxSilence)
		fxAlive(t, s)
	})

	t.Run("T20_unknown_property_identifier", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		for _, h := range []string{
			"10 1D 00 04 4D 51 54 54 05 C2 00 3C 02 04 01 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31",
			atkHex(t, 0x10, "00 04 4D 51 54 54 05 C2 00 3C 02 00 01 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31"),
			atkHex(t, 0x10, "00 04 4D 51 54 54 05 C2 00 3C 02 7F 01 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31"),
			atkHex(t, 0x10, "00 04 4D 51 54 54 05 C2 00 3C 03 80 00 01 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31"),
			// sibling: a property valid elsewhere but not in CONNECT (Topic Alias, Server Keep Alive)
			atkHex(t, 0x10, "00 04 4D 51 54 54 05 C2 00 3C 03 23 00 01 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31"),
			atkHex(t, 0x10, "00 04 4D 51 54 54 05 C2 00 3C 03 13 00 01 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31"),
		} {
			c := dialRaw(t, s.Addr)
			c.send(h)
			atkClosed(t, c, 2*time.Second, atkExact(t, "20 03 00 81 00"))
		}
		fxAlive(t, s)
	})

	t.Run("T21_forbidden_property_values", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		for _, h := range []string{
			"10 1E 00 04 4D 51 54 54 05 C2 00 3C 03 21 00 00 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31",
			"10 20 00 04 4D 51 54 54 05 C2 00 3C 05 27 00 00 00 00 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31",
			atkHex(t, 0x10, "00 04 4D 51 54 54 05 C2 00 3C 02 19 02 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31"), // (c) RRI 2
			// siblings: Request Problem Information 2, duplicated Receive Maximum / Session Expiry
			atkHex(t, 0x10, "00 04 4D 51 54 54 05 C2 00 3C 02 17 02 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31"),
			atkHex(t, 0x10, "00 04 4D 51 54 54 05 C2 00 3C 06 21 00 05 21 00 05 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31"),
			atkHex(t, 0x10, "00 04 4D 51 54 54 05 C2 00 3C 0A 11 00 00 00 0A 11 00 00 00 0A 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31"),
		} {
			c := dialRaw(t, s.Addr)
			c.send(h)
			atkClosed(t, c, 2*time.Second, atkExact(t, "20 03 00 82 00"))
		}
		fxAlive(t, s)
	})

	t.Run("T23_oversized_identity_fields", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		giant := func(version byte) []byte {
			b := packet.AppendConnect(nil, &packet.Connect{Version: version, CleanStart: true, KeepAlive: 60,
				ClientID: "p1" + strings.Repeat("x", 65533), HasUser: true, Username: "p1dev", HasPass: true, Password: []byte("pw1")})
			return b
		}
		g4 := giant(4)
		if len(g4) != 65563 || !bytes.HasPrefix(g4, unhex(t, "10 97 80 04 00 04 4D 51 54 54 04 C2")) {
			t.Fatalf("giant CONNECT is %d bytes, % x...", len(g4), g4[:12])
		}
		for i := range 20 { // scaled from 1,000
			c := dialRaw(t, s.Addr)
			go atkWriteAll(c, g4)
			atkClosed(t, c, 2*time.Second, atkExact(t, "20 02 00 02"))
			if i == 0 {
				c = dialRaw(t, s.Addr)
				go atkWriteAll(c, giant(5))
				atkClosed(t, c, 2*time.Second, atkExact(t, "20 03 00 85 00"), atkExact(t, "20 03 00 95 00"))
			}
		}
		// Within the pre-auth cap but above MaxClientIDLength (128): refused with the identifier code.
		long := "p1" + strings.Repeat("x", 127)
		c := dialRaw(t, s.Addr)
		c.write(fxConnect(4, true, long, "p1dev", "pw1"))
		atkClosed(t, c, 2*time.Second, atkExact(t, "20 02 00 02"))
		c = dialRaw(t, s.Addr)
		c.write(fxConnect(5, true, long, "p1dev", "pw1"))
		atkClosed(t, c, 2*time.Second, atkExact(t, "20 03 00 85 00"))
		// Exactly 128 bytes is accepted.
		c, _ = fxLoginB(t, s, fxConnect(4, true, long[:128], "p1dev", "pw1"))
		c.nc.Close()
		// Oversized user name and password: refused, never a crash.
		c = dialRaw(t, s.Addr)
		c.write(fxConnect(4, true, "p1", strings.Repeat("u", 60000), "pw1"))
		atkClosed(t, c, 2*time.Second, atkConnack(4, 5))
		c = dialRaw(t, s.Addr)
		c.write(fxConnect(4, true, "p1", "p1dev", strings.Repeat("w", 60000)))
		atkClosed(t, c, 2*time.Second, atkConnack(4, 5))
		fxAlive(t, s)
	})

	t.Run("T24_keep_alive_abuse", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		// 5.0: Keep Alive 65535 and 0 are answered with Server Keep Alive 300 (13 01 2C).
		for _, h := range []string{
			"10 1B 00 04 4D 51 54 54 05 C2 FF FF 00 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31",
			"10 1B 00 04 4D 51 54 54 05 C2 00 00 00 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31",
		} {
			c, ack := fxLogin(t, s, h)
			if !atkHasProp(ack, "13 01 2C") {
				t.Errorf("CONNACK % x lacks Server Keep Alive 13 01 2C", ack)
			}
			c.nc.Close()
		}
		fxAlive(t, s)

		// With the server limit at 1 s, a silent client is closed after at most 1.5 s,
		// whatever Keep Alive it asked for (65535 or 0).
		s, _ = fxStart(t, broker.Config{MaxKeepAlive: 1})
		var open []*rawConn
		for i, h := range []string{
			"10 1A 00 04 4D 51 54 54 04 C2 FF FF 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31",
			"10 1A 00 04 4D 51 54 54 04 C2 00 00 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31",
			"10 1B 00 04 4D 51 54 54 05 C2 FF FF 00 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31",
			"10 1B 00 04 4D 51 54 54 05 C2 00 00 00 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31",
		} {
			// distinct client ids (p1, p1a, ...) so that the four run side by side
			if i > 0 {
				f := strings.Fields(h)
				ka := uint16(unhex(t, f[10])[0])<<8 | uint16(unhex(t, f[11])[0])
				h = fmt.Sprintf("% X", packet.AppendConnect(nil, &packet.Connect{Version: unhex(t, f[8])[0], CleanStart: true,
					KeepAlive: ka, ClientID: "p1" + string(rune('a'+i)), HasUser: true, Username: "p1dev", HasPass: true, Password: []byte("pw1")}))
			}
			c := dialRaw(t, s.Addr)
			c.send(h)
			ack := atkRead(t, c, 2*time.Second)
			if ack[0] != 0x20 {
				t.Fatalf("got % x, want CONNACK", ack)
			}
			if ack[3] != 0 {
				if !bytes.Equal(ack, []byte{0x20, 2, 0, 2}) && !bytes.Equal(ack, []byte{0x20, 3, 0, 0x82, 0}) {
					t.Fatalf("refusal % x", ack)
				}
				continue
			}
			if strings.Fields(h)[8] == "05" && !atkHasProp(ack, "13 00 01") {
				t.Errorf("CONNACK % x lacks Server Keep Alive 13 00 01", ack)
			}
			open = append(open, c)
		}
		start := time.Now()
		for _, c := range open {
			atkClosed(t, c, time.Until(start.Add(4*time.Second)), atkDisc(0x8D))
		}
		fxAlive(t, s)
	})

	t.Run("T25_wildcards_in_identity_vs_pattern_acl", func(t *testing.T) {
		s, a := fxStart(t, broker.Config{})
		a.NoPrefixRule = true
		a.Grant("*", "rpm/%c/#", true, true)
		clin := fxClin(t, s, false)
		p2, _ := fxLogin(t, s, fxC4p2)

		// Positive control: the pattern path works for an ordinary id.
		ok, _ := fxLoginB(t, s, fxConnect(4, true, "zz9", "p1dev", "pw1"))
		ok.send(atkHex(t, 0x32, atkStr("rpm/zz9/hr")+" 00 01 78"))
		ok.expect("40 02 00 01")
		atkAck(t, clin, clin.expectType(packet.PUBLISH))

		for _, h := range []string{
			"10 19 00 04 4D 51 54 54 04 C2 00 3C 00 01 2B 00 05 70 31 64 65 76 00 03 70 77 31",
			"10 19 00 04 4D 51 54 54 04 C2 00 3C 00 01 23 00 05 70 31 64 65 76 00 03 70 77 31",
			fmt.Sprintf("% X", fxConnect(4, true, "p1/../p2", "p1dev", "pw1")),
			fmt.Sprintf("% X", fxConnect(4, true, "+/#", "p1dev", "pw1")),
		} {
			c := dialRaw(t, s.Addr)
			c.send(h)
			ack := atkRead(t, c, 2*time.Second)
			if ack[0] != 0x20 || len(ack) != 4 {
				t.Fatalf("got % x, want a 3.1.1 CONNACK", ack)
			}
			if ack[3] != 0 {
				if ack[3] != 2 {
					t.Errorf("refused with % x, want return code 2", ack)
				}
				atkClosed(t, c, 2*time.Second)
				continue
			}
			// Accepted: a publish to rpm/p2/hr is not delivered (PUBACK or close).
			c.send("32 0F 00 09 72 70 6D 2F 70 32 2F 68 72 00 01 41 54")
			got, err := c.readPacket(time.Second)
			if err == nil && !bytes.Equal(got, []byte{0x40, 2, 0, 1}) {
				t.Fatalf("publish to rpm/p2/hr answered % x", got)
			}
			clin.expectSilence(fxSilence)
			if err != nil {
				continue
			}
			// SUB rpm/+/hr does not deliver p2 data.
			c.send(atkHex(t, 0x82, "00 02 "+atkStr("rpm/+/hr")+" 00"))
			c.expectType(packet.SUBACK)
			p2.send("30 0D 00 09 72 70 6D 2F 70 32 2F 68 72 38 38")
			clin.expectType(packet.PUBLISH)
			c.expectSilence(fxSilence)
			c.nc.Close()
		}
		// Anonymous and empty user names are refused, never a crash.
		for _, cn := range []*packet.Connect{
			{Version: 4, CleanStart: true, KeepAlive: 60, ClientID: "p1"},
			{Version: 4, CleanStart: true, KeepAlive: 60, ClientID: "+"},
			{Version: 4, CleanStart: true, KeepAlive: 60, ClientID: "p1", HasUser: true, Username: ""},
			{Version: 4, CleanStart: true, KeepAlive: 60, ClientID: "", HasUser: true, Username: "", HasPass: true},
			{Version: 5, CleanStart: true, KeepAlive: 60, ClientID: ""},
			{Version: 5, CleanStart: true, KeepAlive: 60, ClientID: "#", HasUser: true, Username: ""},
		} {
			c := dialRaw(t, s.Addr)
			c.write(packet.AppendConnect(nil, cn))
			atkClosed(t, c, 2*time.Second, atkConnack(2, 4, 5, 0x85, 0x86, 0x87))
		}
		fxAlive(t, s)
	})

	t.Run("T26_session_hijack_with_other_identity", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		const durableP1 = "10 1A 00 04 4D 51 54 54 04 C0 00 3C 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31"
		c, _ := fxLogin(t, s, durableP1)
		c.send("82 0D 00 01 00 08 72 70 6D 2F 70 31 2F 23 01")
		c.expect("90 03 00 01 01")
		c.send("E0 00")
		atkClosed(t, c, 2*time.Second)

		pub, _ := fxLoginB(t, s, fxConnect(4, true, "p1pub", "p1dev", "pw1"))
		for i := 1; i <= 5; i++ {
			pub.send(atkHex(t, 0x32, fmt.Sprintf("00 09 72 70 6D 2F 70 31 2F 68 72 00 %02X 3%d", i, i)))
			pub.expect(fmt.Sprintf("40 02 00 %02X", i))
		}

		// p2dev takes ClientID p1 (3.1.1 and 5.0): refused, nothing delivered.
		atk := dialRaw(t, s.Addr)
		atk.send("10 1A 00 04 4D 51 54 54 04 C0 00 3C 00 02 70 31 00 05 70 32 64 65 76 00 03 70 77 32")
		atkClosed(t, atk, 2*time.Second, atkExact(t, "20 02 00 02"))
		atk = dialRaw(t, s.Addr)
		atk.send("10 1B 00 04 4D 51 54 54 05 C0 00 3C 00 00 02 70 31 00 05 70 32 64 65 76 00 03 70 77 32")
		atkClosed(t, atk, 2*time.Second, atkExact(t, "20 03 00 85 00"), atkExact(t, "20 03 00 87 00"))

		// The owner gets its five queued messages.
		c = dialRaw(t, s.Addr)
		c.send(durableP1)
		c.expect("20 02 01 00")
		for i := 1; i <= 5; i++ {
			p := c.expectType(packet.PUBLISH)
			if !bytes.Contains(p, []byte("rpm/p1/hr")) || p[len(p)-1] != byte('0'+i) {
				t.Fatalf("queued message %d: % x", i, p)
			}
			atkAck(t, c, p)
		}
		c.expectSilence(fxSilence)
		fxAlive(t, s)
	})

	t.Run("T27_clientid_takeover_flapping", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		p1, _ := fxLogin(t, s, fxC4p1)
		p15, _ := fxLoginB(t, s, fxConnect(5, true, "p1five", "p1dev", "pw1"))
		for i := range 60 { // 100 in CASES; the property is per attempt
			atk := dialRaw(t, s.Addr)
			if i%2 == 0 {
				atk.send("10 1A 00 04 4D 51 54 54 04 C2 00 3C 00 02 70 31 00 05 70 32 64 65 76 00 03 70 77 32")
				atkClosed(t, atk, 2*time.Second, atkExact(t, "20 02 00 02"))
			} else {
				atk.write(fxConnect(5, true, "p1five", "p2dev", "pw2"))
				atkClosed(t, atk, 2*time.Second, atkExact(t, "20 03 00 85 00"), atkExact(t, "20 03 00 87 00"))
			}
		}
		for _, c := range []*rawConn{p1, p15} {
			c.expectSilence(50 * time.Millisecond) // no DISCONNECT 0x8E, not closed
			c.send("C0 00")
			c.expect("D0 00")
		}
		fxAlive(t, s)
	})

	t.Run("T28_connect_never_sent", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{ConnectTimeout: time.Second})
		const n = 200 // scaled from 2,000; spread over source addresses, within the per-address cap
		start := time.Now()
		conns := make([]*rawConn, n)
		for i := range conns {
			conns[i] = atkDialFrom(t, s.Addr, fmt.Sprintf("127.0.0.%d", 2+i%4))
		}
		p1 := dialRaw(t, s.Addr)
		p1.send(fxC4p1)
		if got, err := p1.readPacket(time.Second); err != nil || !bytes.Equal(got, []byte{0x20, 2, 0, 0}) {
			t.Fatalf("legitimate CONNACK % x, %v", got, err)
		}
		for _, c := range conns {
			atkClosed(t, c, time.Until(start.Add(3*time.Second)))
		}
		p1.send("C0 00") // the authenticated client is not subject to the CONNECT deadline
		p1.expect("D0 00")
		fxAlive(t, s)
	})

	t.Run("T29_slowloris_connect", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{ConnectTimeout: time.Second})
		full := unhex(t, fxC4p1)
		const n = 20 // scaled from 500
		start := time.Now()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		conns := make([]*rawConn, n)
		for i := range conns {
			c := dialRaw(t, s.Addr)
			conns[i] = c
			wg.Go(func() { // one byte every 150 ms: 28 bytes take 4.2 s
				for _, b := range full {
					c.nc.SetWriteDeadline(time.Now().Add(time.Second))
					if _, err := c.nc.Write([]byte{b}); err != nil {
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(150 * time.Millisecond):
					}
				}
			})
		}
		// Closed at the total CONNECT deadline (1 s), long before the last byte (4.2 s).
		for _, c := range conns {
			atkClosed(t, c, time.Until(start.Add(2500*time.Millisecond)))
		}
		close(stop)
		wg.Wait()
		fxAlive(t, s)
	})

	t.Run("T30_connection_flood_one_source", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{MaxConnectionsPerAddress: 20, ConnectionRate: 1000, ConnectionBurst: 1000})
		legit := atkDialFrom(t, s.Addr, "127.0.0.7")
		legit.send(fxC4p1)
		legit.expect("20 02 00 00")
		var held []*rawConn
		for range 20 { // fill the cap of 127.0.0.8 with connections that authenticate
			c := atkDialFrom(t, s.Addr, "127.0.0.8")
			held = append(held, c)
		}
		for i := range 30 { // beyond the cap: closed at once, nothing sent
			c := atkDialFrom(t, s.Addr, "127.0.0.8")
			c.write(fxConnect(4, true, fmt.Sprintf("p1-%d", i), "p1dev", "pw1"))
			atkClosed(t, c, time.Second)
		}
		legit.send("C0 00") // the other source is unaffected
		legit.expect("D0 00")
		for _, c := range held {
			c.nc.Close()
		}
		// Once they are gone, the address may connect again.
		eventually(t, 5*time.Second, "the cap to be released", func() bool {
			c := atkDialFrom(t, s.Addr, "127.0.0.8")
			defer c.nc.Close()
			c.write(fxConnect(4, true, "p1-again", "p1dev", "pw1"))
			got, err := c.readPacket(500 * time.Millisecond)
			return err == nil && bytes.Equal(got, []byte{0x20, 2, 0, 0})
		})
	})

	t.Run("T30_connection_rate_one_source", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{ConnectionRate: 1, ConnectionBurst: 5})
		closedAtOnce := 0
		for range 10 {
			c := atkDialFrom(t, s.Addr, "127.0.0.9")
			c.send(fxC4p1)
			if _, err := c.readPacket(time.Second); err != nil {
				closedAtOnce++
			}
			c.nc.Close()
		}
		if closedAtOnce < 4 {
			t.Fatalf("%d of 10 rapid connections refused, want at least 4 (burst 5, 1/s)", closedAtOnce)
		}
		fxAlive(t, s)
	})

	// T31 (password brute force): throttling lives in the composition root's authenticator;
	// see cmd/vitalmq TestLoginThrottle and internal/auth's throttle tests.
}

// atkDialFrom connects from a given loopback source address (127.0.0.0/8 is all loopback).
func atkDialFrom(t testing.TB, addr, src string) *rawConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc}
}
