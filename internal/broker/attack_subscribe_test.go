package broker_test

// CASES §2.5 (SUBSCRIBE, wildcards, shared subscriptions, ACL) and the parts of §2.6 the
// Authorizer hooks cover (T62, T63, T65, T67, T68).

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
	"vitalmq/internal/topic"
)

const (
	atkRetainP2 = "33 0F 00 09 72 70 6D 2F 70 32 2F 68 72 00 01 37 32" // retained rpm/p2/hr "72", QoS 1 id 1
	atkLiveP2   = "32 0F 00 09 72 70 6D 2F 70 32 2F 68 72 00 0B 38 38" // rpm/p2/hr "88", QoS 1 id 11
	atkSubP2    = "82 0D 00 01 00 08 72 70 6D 2F 70 32 2F 23 01"       // SUBSCRIBE rpm/p2/# QoS 1, id 1
	atkSubP1    = "82 0D 00 01 00 08 72 70 6D 2F 70 31 2F 23 01"       // SUBSCRIBE rpm/p1/# QoS 1, id 1
)

// atkNoLeak: with a retained message on rpm/p2/hr, p1 (3.1.1, or 5.0 when conn is C5)
// sends sub; the SUBACK is either refused or granted; then p2 publishes live on rpm/p2/hr.
// p1 must receive neither, and if granted must receive its own rpm/p1/hr message. With
// loose, the fixture grants every subscription, so only the per-delivery check protects.
func atkNoLeak(t *testing.T, loose bool, conn, sub string, refused ...string) {
	t.Helper()
	s, a := fxStart(t, broker.Config{})
	a.LooseSubscribe = loose
	v5 := conn == fxC5p1
	p2, _ := fxLogin(t, s, fxC4p2)
	p2.send(atkRetainP2)
	p2.expect("40 02 00 01")
	p1, _ := fxLogin(t, s, conn)
	p1.send(sub)
	ack := p1.expectType(packet.SUBACK)
	granted := true
	for _, r := range refused {
		if bytes.Equal(ack, unhex(t, r)) {
			granted = false
		}
	}
	for _, r := range ack[4:] {
		if granted && r >= 0x80 {
			t.Fatalf("SUBACK % x is neither %v nor a grant", ack, refused)
		}
	}
	if loose && !granted {
		t.Fatalf("SUBACK % x: the fixture granted the subscription", ack)
	}
	p2.send(atkLiveP2)
	p2.expect("40 02 00 0B")
	if granted && atkFiltersMatch(t, sub, v5, "rpm/p1/hr") {
		own, _ := fxLoginB(t, s, fxConnect(4, true, "p1own", "p1dev", "pw1"))
		own.send("30 0C 00 09 72 70 6D 2F 70 31 2F 68 72 78")
		got := atkParsePub(t, p1.expectType(packet.PUBLISH), v5)
		if got.topic != "rpm/p1/hr" || string(got.body) != "x" {
			t.Fatalf("p1 received %q = %q, want its own rpm/p1/hr", got.topic, got.body)
		}
	}
	p1.expectSilence(fxSilence)
	fxAlive(t, s)
}

// atkFiltersMatch reports whether a filter of the SUBSCRIBE packet (hex) matches name.
func atkFiltersMatch(t *testing.T, sub string, v5 bool, name string) bool {
	b := unhex(t, sub)
	_, off := atkVBI(b[1:])
	b = b[1+off+2:]
	if v5 {
		n, o := atkVBI(b)
		b = b[o+n:]
	}
	for len(b) >= 3 {
		n := int(b[0])<<8 | int(b[1])
		f := string(b[2 : 2+n])
		b = b[3+n:]
		if _, inner, ok, _ := topic.ParseShared(f); ok {
			f = inner
		}
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}

func TestAttackSubscribe(t *testing.T) {
	for _, loose := range []bool{false, true} {
		mode := "strict_acl"
		if loose {
			mode = "grant_all_subscriptions"
		}
		t.Run("T48_subscribe_hash/"+mode, func(t *testing.T) {
			t.Run("3.1.1", func(t *testing.T) { atkNoLeak(t, loose, fxC4p1, "82 06 00 02 00 01 23 01", "90 03 00 02 80") })
			t.Run("5.0", func(t *testing.T) { atkNoLeak(t, loose, fxC5p1, "82 07 00 02 00 00 01 23 01", "90 04 00 02 00 87") })
		})
		t.Run("T49_wildcard_filters/"+mode, func(t *testing.T) {
			t.Run("plus_plus_hash", func(t *testing.T) {
				atkNoLeak(t, loose, fxC4p1, "82 0A 00 03 00 05 2B 2F 2B 2F 23 01", "90 03 00 03 80")
			})
			t.Run("rpm_hash", func(t *testing.T) {
				atkNoLeak(t, loose, fxC4p1, "82 0A 00 04 00 05 72 70 6D 2F 23 01", "90 03 00 04 80")
			})
			t.Run("rpm_plus_hr", func(t *testing.T) {
				atkNoLeak(t, loose, fxC4p1, atkHex(t, 0x82, "00 04 "+atkStr("rpm/+/hr")+" 01"), "90 03 00 04 80")
			})
			t.Run("multi_filter_one_allowed", func(t *testing.T) { // A12: one allowed filter does not open the others
				atkNoLeak(t, loose, fxC4p1, atkHex(t, 0x82, "00 04 "+atkStr("rpm/p1/#")+" 01 "+atkStr("rpm/#")+" 01"), "90 04 00 04 01 80")
			})
		})
		t.Run("T65_retained_unauthorized/"+mode, func(t *testing.T) {
			t.Run("rpm_hash", func(t *testing.T) {
				atkNoLeak(t, loose, fxC4p1, "82 0A 00 04 00 05 72 70 6D 2F 23 01", "90 03 00 04 80")
			})
			t.Run("hash", func(t *testing.T) { atkNoLeak(t, loose, fxC4p1, "82 06 00 04 00 01 23 01", "90 03 00 04 80") })
			t.Run("exact_topic", func(t *testing.T) {
				atkNoLeak(t, loose, fxC4p1, atkHex(t, 0x82, "00 04 "+atkStr("rpm/p2/hr")+" 01"), "90 03 00 04 80")
			})
			t.Run("shared_5.0", func(t *testing.T) {
				atkNoLeak(t, loose, fxC5p1, atkHex(t, 0x82, "00 04 00 "+atkStr("$share/g/rpm/#")+" 01"), "90 04 00 04 00 87")
			})
			t.Run("retain_handling_0_5.0", func(t *testing.T) {
				atkNoLeak(t, loose, fxC5p1, atkHex(t, 0x82, "00 04 00 "+atkStr("rpm/#")+" 01"), "90 04 00 04 00 87")
			})
		})
	}

	t.Run("T50_sys_and_dollar_isolation", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{SysInterval: 50 * time.Millisecond})
		ctl := fxAdmin(t, s, "adm-sys", "$SYS/#")
		ctl.expectType(packet.PUBLISH) // positive control: $SYS is published
		adm := fxAdmin(t, s, "adm", "#", "+/broker/#", "+/#", "+", "$share/g/#", "$share/g/+/broker/#")
		p1, _ := fxLogin(t, s, fxC4p1)
		p1.send("82 0B 00 05 00 06 24 53 59 53 2F 23 00")
		p1.expect("90 03 00 05 80")
		p5, _ := fxLoginB(t, s, fxConnect(5, true, "p1five", "p1dev", "pw1"))
		p5.send("82 0C 00 05 00 00 06 24 53 59 53 2F 23 00")
		p5.expect("90 04 00 05 00 87")
		for _, c := range []*rawConn{adm, p1, p5} {
			c.expectSilence(fxSilence) // several $SYS rounds pass meanwhile
		}
		fxAlive(t, s)
	})

	for _, loose := range []bool{false, true} {
		t.Run(fmt.Sprintf("T51_shared_subscription_forbidden_filter/loose=%v", loose), func(t *testing.T) {
			s, a := fxStart(t, broker.Config{})
			a.LooseSubscribe = loose
			p4, _ := fxLogin(t, s, fxC4p1)
			p4.send("82 16 00 06 00 11 24 73 68 61 72 65 2F 67 2F 72 70 6D 2F 70 32 2F 23 01")
			ack4 := p4.expectType(packet.SUBACK)
			p5, _ := fxLoginB(t, s, fxConnect(5, true, "p1five", "p1dev", "pw1"))
			p5.send("82 17 00 08 00 00 11 24 73 68 61 72 65 2F 67 2F 72 70 6D 2F 70 32 2F 23 01")
			ack5 := p5.expectType(packet.SUBACK)
			if !loose {
				if !bytes.Equal(ack4, unhex(t, "90 03 00 06 80")) || !bytes.Equal(ack5, unhex(t, "90 04 00 08 00 87")) {
					t.Fatalf("SUBACKs % x, % x; want 90 03 00 06 80 and 90 04 00 08 00 87", ack4, ack5)
				}
				if n := s.Stats().Subscriptions; n != 0 {
					t.Fatalf("%d subscriptions installed, want 0", n)
				}
			}
			p2, _ := fxLogin(t, s, fxC4p2)
			for i := 1; i <= 10; i++ {
				p2.send(atkHex(t, 0x32, fmt.Sprintf("%s 00 %02X 38 38", atkStr("rpm/p2/hr"), i)))
				p2.expect(fmt.Sprintf("40 02 00 %02X", i))
			}
			p4.expectSilence(fxSilence)
			p5.expectSilence(10 * time.Millisecond)
			fxAlive(t, s)
		})
	}

	t.Run("T53_malformed_shared_subscription_names", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		for i, f := range []string{"$share/g", "$share//rpm/p1/#", "$share/g+/rpm/p1/#", "$share/g/", "$share/#/x", "$share/+/rpm/p1/#", "$share/g#/rpm/p1/#"} {
			c, _ := fxLogin(t, s, fxC5p1)
			id := fmt.Sprintf("%04X", i+2)
			c.send(atkHex(t, 0x82, id+" 00 "+atkStr(f)+" 00"))
			got := atkRead(t, c, 2*time.Second)
			switch {
			case bytes.Equal(got, unhex(t, "90 04 "+id+" 00 8F")):
				c.send("C0 00")
				c.expect("D0 00")
			case atkDisc(0x82, 0x81, 0x8F, 0x9E)(got):
				atkClosed(t, c, 2*time.Second)
			default:
				t.Fatalf("%s: got % x, want SUBACK 8F or DISCONNECT 82", f, got)
			}
			// 3.1.1: closed or SUBACK 80.
			c4, _ := fxLogin(t, s, fxC4p1)
			c4.send(atkHex(t, 0x82, id+" "+atkStr(f)+" 00"))
			if got, err := c4.readPacket(2 * time.Second); err == nil && !bytes.Equal(got, unhex(t, "90 03 "+id+" 80")) {
				t.Fatalf("%s (3.1.1): got % x, want SUBACK 80 or close", f, got)
			}
		}
		if n := s.Stats().Subscriptions; n != 0 {
			t.Fatalf("%d subscriptions installed, want 0", n)
		}
		fxAlive(t, s)
	})

	t.Run("T55_subscription_identifier_0_or_twice", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		for _, x := range []struct {
			h       string
			reasons []byte
		}{
			{"82 10 00 01 02 0B 00 00 08 72 70 6D 2F 70 31 2F 23 00", []byte{0x82, 0x81}},
			{"82 12 00 01 04 0B 01 0B 01 00 08 72 70 6D 2F 70 31 2F 23 00", []byte{0x82, 0x81}},
			{atkHex(t, 0x82, "00 01 06 0B 80 80 80 80 01 "+atkStr("rpm/p1/#")+" 00"), []byte{0x81}},
			{atkHex(t, 0x82, "00 01 07 0B 80 80 80 80 80 01 "+atkStr("rpm/p1/#")+" 00"), []byte{0x81}},
		} {
			c, _ := fxLogin(t, s, fxC5p1)
			c.send(x.h)
			atkClosed(t, c, 2*time.Second, atkDisc(x.reasons...))
		}
		// Positive control: the largest valid identifier, 268,435,455, is accepted.
		c, _ := fxLogin(t, s, fxC5p1)
		c.send(atkHex(t, 0x82, "00 01 05 0B FF FF FF 7F "+atkStr("rpm/p1/#")+" 00"))
		c.expect("90 04 00 01 00 00")
		if n := s.Stats().Subscriptions; n != 1 {
			t.Fatalf("%d subscriptions installed, want 1", n)
		}
		fxAlive(t, s)
	})

	t.Run("T56_invalid_subscription_options", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		for _, h := range []string{
			"82 0D 00 08 00 08 72 70 6D 2F 70 31 2F 23 03",
			"82 0D 00 08 00 08 72 70 6D 2F 70 31 2F 23 04", // 3.1.1 reserved bits [MQTT-3.8.3-4]
			"82 0D 00 08 00 08 72 70 6D 2F 70 31 2F 23 C0",
		} {
			c, _ := fxLogin(t, s, fxC4p1)
			c.send(h)
			atkClosed(t, c, 2*time.Second)
		}
		for _, h := range []string{
			"82 0E 00 07 00 00 08 72 70 6D 2F 70 31 2F 23 40",
			"82 0E 00 06 00 00 08 72 70 6D 2F 70 31 2F 23 30",
			"82 0E 00 06 00 00 08 72 70 6D 2F 70 31 2F 23 80",
			"82 0E 00 06 00 00 08 72 70 6D 2F 70 31 2F 23 03",
			atkHex(t, 0x82, "00 06 00 "+atkStr("$share/g/rpm/p1/#")+" 04"), // No Local on a shared subscription [MQTT-3.8.3-4]
		} {
			c, _ := fxLogin(t, s, fxC5p1)
			c.send(h)
			atkClosed(t, c, 2*time.Second, atkDisc(0x81, 0x82))
		}
		if n := s.Stats().Subscriptions; n != 0 {
			t.Fatalf("%d subscriptions installed, want 0", n)
		}
		fxAlive(t, s)
	})

	t.Run("T57_structurally_broken_subscribe", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		for _, x := range []struct{ h string }{
			{"82 02 00 0C"},
			{"82 0D 00 00 00 08 72 70 6D 2F 70 31 2F 23 00"},
			{"82 05 00 0A 00 00 00"},
			{"82 0C 00 0A 00 08 72 70 6D 2F 70 31 2F 23"},    // filter without options byte
			{"82 0D 00 0A 00 09 72 70 6D 2F 70 31 2F 23 00"}, // filter length eats the options byte
			{"A2 02 00 0C"}, // UNSUBSCRIBE without payload [MQTT-3.10.3-2]
			{"A2 0C 00 00 00 08 72 70 6D 2F 70 31 2F 23"}, // UNSUBSCRIBE id 0
			{"A2 04 00 0A 00 00"},                         // UNSUBSCRIBE empty filter
		} {
			t.Run("3.1.1/"+x.h, func(t *testing.T) {
				c, _ := fxLogin(t, s, fxC4p1)
				c.send(x.h)
				atkClosed(t, c, time.Second)
			})
		}
		for _, x := range []struct{ h string }{
			{"82 03 00 0C 00"},
			{"82 0E 00 00 00 00 08 72 70 6D 2F 70 31 2F 23 00"},
			{"82 06 00 0A 00 00 00 00"},
			{"A2 03 00 0C 00"},
			{"A2 05 00 0A 00 00 00"},
		} {
			t.Run("5.0/"+x.h, func(t *testing.T) {
				c, _ := fxLogin(t, s, fxC5p1)
				c.send(x.h)
				atkClosed(t, c, time.Second, atkDisc(0x81, 0x82))
			})
		}
		// Misplaced '#': SUBACK failure or close.
		c, _ := fxLogin(t, s, fxC4p1)
		c.send("82 0D 00 0B 00 08 72 70 6D 2F 23 2F 68 72 00")
		if got, err := c.readPacket(2 * time.Second); err == nil && !bytes.Equal(got, unhex(t, "90 03 00 0B 80")) {
			t.Fatalf("rpm/#/hr: got % x", got)
		}
		c, _ = fxLogin(t, s, fxC5p1)
		c.send(atkHex(t, 0x82, "00 0B 00 "+atkStr("rpm/p1/h#")+" 00 "+atkStr("rpm/p1+")+" 00"))
		if got, err := c.readPacket(2 * time.Second); err == nil && !bytes.Equal(got, unhex(t, "90 05 00 0B 00 8F 8F")) {
			t.Fatalf("rpm/p1/h#: got % x", got)
		}
		if n := s.Stats().Subscriptions; n != 0 {
			t.Fatalf("%d subscriptions installed, want 0", n)
		}
		fxAlive(t, s)
	})

	t.Run("T59_deep_topic_hierarchy", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		clin := fxClin(t, s, false)
		other, _ := fxLoginB(t, s, fxConnect(4, true, "p1other", "p1dev", "pw1"))
		sub := append(unhex(t, "82 83 80 04 00 01 FF FE"), bytes.Repeat([]byte{'/'}, 65534)...)
		sub = append(sub, 0)
		if len(sub) != 65543 {
			t.Fatalf("subscribe is %d bytes", len(sub))
		}
		name := strings.Repeat("a/", 32766) + "a"
		pub4 := append(unhex(t, "30 80 80 04 FF FD"), name...)
		pub4 = append(pub4, 'x')
		pub5 := atkPacket(0x30, append(append(unhex(t, "FF FD"), name...), 0, 'x'))
		for range 10 { // 10 such packets; the other client's pings keep being answered
			c, _ := fxLogin(t, s, fxC4p1)
			c.write(sub)
			if got, err := c.readPacket(2 * time.Second); err == nil && !bytes.Equal(got, unhex(t, "90 03 00 01 80")) {
				t.Fatalf("deep filter: got % x, want SUBACK 80 or close", got)
			}
			c, _ = fxLogin(t, s, fxC4p1)
			c.write(pub4)
			atkClosed(t, c, 2*time.Second)
			c, _ = fxLogin(t, s, fxC5p1)
			c.write(pub5)
			atkClosed(t, c, 2*time.Second, atkDisc(0x90, 0x81))
			other.send("C0 00")
			other.expect("D0 00")
		}
		// Just over the configured limits: 33 levels, 1025 bytes.
		for _, name := range []string{"rpm/p1/" + strings.Repeat("a/", 30) + "a", "rpm/p1/" + strings.Repeat("a", 1018)} {
			c, _ := fxLogin(t, s, fxC4p1)
			c.send(atkHex(t, 0x30, atkStr(name)+" 78"))
			atkClosed(t, c, 2*time.Second)
			c, _ = fxLogin(t, s, fxC4p1)
			c.send(atkHex(t, 0x82, "00 01 "+atkStr(name)+" 00"))
			if got, err := c.readPacket(2 * time.Second); err == nil && !bytes.Equal(got, unhex(t, "90 03 00 01 80")) {
				t.Fatalf("over-limit filter: got % x", got)
			}
		}
		clin.expectSilence(fxSilence)
		fxAlive(t, s)
	})

	t.Run("T61_subscribe_unsubscribe_sequence", func(t *testing.T) {
		s, a := fxStart(t, broker.Config{})
		a.Grant("tdev", "+/+/#", true, false)
		c, _ := fxLogin(t, s, fxC4t1)
		c.send("82 26 12 34 00 09 64 72 61 73 68 2F 31 2F 23 00 00 09 65 72 61 73 68 2F 32 2F 23 00 00 09 63 72 61 73 68 2F 33 2F 23 00")
		c.expect("90 05 12 34 00 00 00")
		c.send("A2 0D 12 34 00 09 64 72 61 73 68 2F 31 2F 23")
		c.expect("B0 02 12 34")
		c2, _ := fxLogin(t, s, fxC4t2)
		c2.send("82 0E 12 34 00 09 63 72 61 73 68 2F 33 2F 23 00")
		c2.expect("90 03 12 34 00")
		c.send("C0 00")
		c.expect("D0 00")
		fxAlive(t, s)
	})

	// §2.6, as far as the Authorizer hooks go.

	t.Run("T62_will_topic_outside_acl", func(t *testing.T) {
		s, a := fxStart(t, broker.Config{})
		clin := fxClin(t, s, false)
		p2, _ := fxLogin(t, s, fxC4p2)
		p2.send(atkSubP2)
		p2.expect("90 03 00 01 01")
		for _, x := range []struct{ h, refused string }{
			{"10 2C 00 04 4D 51 54 54 04 CE 00 3C 00 02 70 31 00 0A 72 70 6D 2F 70 32 2F 63 6D 64 00 04 6F 70 65 6E 00 05 70 31 64 65 76 00 03 70 77 31", "20 02 00 05"},
			{"10 2E 00 04 4D 51 54 54 05 CE 00 3C 00 00 02 70 31 00 00 0A 72 70 6D 2F 70 32 2F 63 6D 64 00 04 6F 70 65 6E 00 05 70 31 64 65 76 00 03 70 77 31", "20 03 00 87 00"},
		} {
			c := dialRaw(t, s.Addr)
			c.send(x.h)
			got := atkRead(t, c, 2*time.Second)
			if bytes.Equal(got, unhex(t, x.refused)) {
				atkClosed(t, c, 2*time.Second)
				continue
			}
			if got[0] != 0x20 || got[3] != 0 {
				t.Fatalf("CONNACK % x, want %s (or success)", got, x.refused)
			}
			atkAbort(c)
		}
		// A will allowed at CONNECT but revoked before the abort is not published either.
		will := func() *rawConn {
			c, _ := fxLoginB(t, s, packet.AppendConnect(nil, &packet.Connect{Version: 4, CleanStart: true, KeepAlive: 60,
				ClientID: "p1w", HasWill: true, Will: packet.Will{Topic: "rpm/p1/will", Payload: []byte("x"), QoS: 1},
				HasUser: true, Username: "p1dev", HasPass: true, Password: []byte("pw1")}))
			return c
		}
		c := will()
		atkAbort(c)
		if p := atkParsePub(t, clin.expectType(packet.PUBLISH), false); p.topic != "rpm/p1/will" { // positive control
			t.Fatalf("will delivered on %q", p.topic)
		} else {
			clin.write([]byte{0x40, 2, byte(p.id >> 8), byte(p.id)})
		}
		c = will()
		a.Revoke("p1dev", "rpm/p1/#", false, true)
		atkAbort(c)
		clin.expectSilence(fxSilence)
		p2.expectSilence(10 * time.Millisecond)
		fxAlive(t, s)
	})

	t.Run("T63_will_into_reserved_namespaces", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		adm := fxAdmin(t, s, "adm", "$SYS/#", "$CONTROL/#", "#")
		for _, x := range []string{
			"10 2C 00 04 4D 51 54 54 04 C6 00 3C 00 02 70 31 00 0D 24 53 59 53 2F 62 72 6F 6B 65 72 2F 78 00 01 78 00 05 70 31 64 65 76 00 03 70 77 31",
			"10 3C 00 04 4D 51 54 54 04 C6 00 3C 00 02 70 31 00 1C 24 43 4F 4E 54 52 4F 4C 2F 64 79 6E 61 6D 69 63 2D 73 65 63 75 72 69 74 79 2F 76 31 00 02 7B 7D 00 05 70 31 64 65 76 00 03 70 77 31",
			fmt.Sprintf("% X", packet.AppendConnect(nil, &packet.Connect{Version: 4, CleanStart: true, KeepAlive: 60, ClientID: "adm-will",
				HasWill: true, Will: packet.Will{Topic: "$SYS/broker/x", Payload: []byte("x")}, HasUser: true, Username: "admin", HasPass: true, Password: []byte("pwa")})),
		} {
			c := dialRaw(t, s.Addr)
			c.send(x)
			got := atkRead(t, c, 2*time.Second)
			if bytes.Equal(got, unhex(t, "20 02 00 05")) {
				atkClosed(t, c, 2*time.Second)
				continue
			}
			if got[0] != 0x20 || got[3] != 0 {
				t.Fatalf("CONNACK % x, want 20 02 00 05 (or success)", got)
			}
			atkAbort(c)
		}
		adm.expectSilence(fxSilence)
		fxAlive(t, s)
	})

	t.Run("T67_durable_subscription_after_revocation", func(t *testing.T) {
		s, a := fxStart(t, broker.Config{})
		const durableClin = "10 18 00 04 4D 51 54 54 04 C0 00 3C 00 01 63 00 04 63 6C 69 6E 00 03 70 77 63"
		c, _ := fxLogin(t, s, durableClin)
		c.send(atkSubP2)
		c.expect("90 03 00 01 01")
		c.send("E0 00")
		atkClosed(t, c, 2*time.Second)
		p2, _ := fxLogin(t, s, fxC4p2)
		for i := 1; i <= 5; i++ {
			if i == 3 { // two queued before the revocation, three after
				a.Revoke("clin", "rpm/p2/#", true, false)
			}
			p2.send(atkHex(t, 0x32, fmt.Sprintf("%s 00 %02X 3%d", atkStr("rpm/p2/hr"), i, i)))
			p2.expect(fmt.Sprintf("40 02 00 %02X", i))
		}
		c = dialRaw(t, s.Addr)
		c.send(durableClin)
		ack := atkRead(t, c, 2*time.Second)
		if !bytes.Equal(ack, []byte{0x20, 2, 1, 0}) && !bytes.Equal(ack, []byte{0x20, 2, 0, 0}) {
			t.Fatalf("CONNACK % x", ack)
		}
		c.expectSilence(fxSilence)
		p2.send(atkLiveP2)
		p2.expect("40 02 00 0B")
		c.expectSilence(fxSilence)
		if n := s.Stats().Subscriptions; n != 0 {
			t.Errorf("%d subscriptions remain, want the revoked one dropped", n)
		}
		fxAlive(t, s)
	})

	t.Run("T67_online_subscriber_after_revocation", func(t *testing.T) {
		s, a := fxStart(t, broker.Config{})
		clin := fxClin(t, s, false)
		p2, _ := fxLogin(t, s, fxC4p2)
		a.Revoke("clin", "rpm/p2/#", true, false)
		p2.send(atkLiveP2)
		p2.expect("40 02 00 0B")
		clin.expectSilence(fxSilence)
		p1, _ := fxLogin(t, s, fxC4p1) // the rest of rpm/# still flows
		p1.send("30 0C 00 09 72 70 6D 2F 70 31 2F 68 72 78")
		clin.expect("30 0C 00 09 72 70 6D 2F 70 31 2F 68 72 78")
		fxAlive(t, s)
	})

	t.Run("T68_inflight_on_session_resume", func(t *testing.T) {
		s, a := fxStart(t, broker.Config{})
		const durableClin = "10 18 00 04 4D 51 54 54 04 C0 00 3C 00 01 63 00 04 63 6C 69 6E 00 03 70 77 63"
		const durableP1 = "10 1A 00 04 4D 51 54 54 04 C0 00 3C 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31"
		// (a) broker -> client: an unacknowledged QoS 1 message is not re-sent after revocation.
		c, _ := fxLogin(t, s, durableClin)
		c.send(atkSubP2)
		c.expect("90 03 00 01 01")
		p2, _ := fxLogin(t, s, fxC4p2)
		p2.send(atkLiveP2)
		p2.expect("40 02 00 0B")
		if p := atkParsePub(t, c.expectType(packet.PUBLISH), false); p.qos != 1 {
			t.Fatalf("QoS %d", p.qos)
		}
		c.send("E0 00")
		atkClosed(t, c, 2*time.Second)
		a.Revoke("clin", "rpm/p2/#", true, false)
		c = dialRaw(t, s.Addr)
		c.send(durableClin)
		c.expectType(packet.CONNACK)
		c.expectSilence(fxSilence)
		c.send("E0 00")

		// (b) client -> broker: PUBREL after the publisher lost its write permission.
		obs, _ := fxLoginB(t, s, fxConnect(4, true, "cobs", "clin", "pwc"))
		obs.send(atkSubP1)
		obs.expect("90 03 00 01 01")
		p1, _ := fxLogin(t, s, durableP1)
		p1.send("34 0E 00 09 72 70 6D 2F 70 31 2F 68 72 00 01 78")
		p1.expect("50 02 00 01")
		// This broker delivers a QoS 2 message on PUBLISH (method A), before the revocation.
		if got, err := obs.readPacket(fxSilence); err == nil {
			atkAck(t, obs, got)
		}
		p1.send("E0 00")
		atkClosed(t, p1, 2*time.Second)
		a.Revoke("p1dev", "rpm/p1/#", false, true)
		p1 = dialRaw(t, s.Addr)
		p1.send(durableP1)
		p1.expect("20 02 01 00")
		p1.send("62 02 00 01")
		p1.expect("70 02 00 01")
		obs.expectSilence(fxSilence)

		// (c) another identity resuming a session with in-flight messages gets nothing.
		a.Grant("p1dev", "rpm/p1/#", true, true)
		adm := fxAdmin(t, s, "adm")
		p1.send(atkSubP1)
		p1.expect("90 03 00 01 01")
		adm.send("32 0F 00 09 72 70 6D 2F 70 31 2F 68 72 00 01 61 62")
		adm.expect("40 02 00 01")
		p1.expectType(packet.PUBLISH) // not acknowledged
		p1.send("E0 00")
		atkClosed(t, p1, 2*time.Second)
		atk := dialRaw(t, s.Addr)
		atk.send("10 1A 00 04 4D 51 54 54 04 C0 00 3C 00 02 70 31 00 05 70 32 64 65 76 00 03 70 77 32")
		atkClosed(t, atk, 2*time.Second, atkExact(t, "20 02 00 02"))
		fxAlive(t, s)
	})
}
