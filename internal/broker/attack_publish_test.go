package broker_test

// CASES §2.3 (PUBLISH validation) and §2.4 (Topic Alias).

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// atkRejectPublish sends each packet on a fresh p1 connection (3.1.1 when v5 is false,
// else 5.0) and expects the connection closed, a 5.0 client first getting at most a
// DISCONNECT with one of reasons; then clin (3.1.1 and 5.0) must have received nothing.
func atkRejectPublish(t *testing.T, s *testServer, v5 bool, reasons []byte, pkts ...string) {
	t.Helper()
	for _, h := range pkts {
		conn := fxC4p1
		if v5 {
			conn = fxC5p1
		}
		c, _ := fxLogin(t, s, conn)
		c.send(h)
		if v5 {
			atkClosed(t, c, 2*time.Second, atkDisc(reasons...))
		} else {
			atkClosed(t, c, 2*time.Second)
		}
	}
}

func TestAttackPublish(t *testing.T) {
	// Every case: p1 attacks, clin (3.1.1) and clin5 (5.0) on rpm/# must receive nothing.
	run := func(name string, f func(t *testing.T, s *testServer)) {
		t.Run(name, func(t *testing.T) {
			s, _ := fxStart(t, broker.Config{})
			clin := fxClin(t, s, false)
			clin5, _ := fxLoginB(t, s, fxConnect(5, true, "c5", "clin", "pwc"))
			clin5.send(fxSUB5)
			clin5.expect("90 04 00 01 00 01")
			f(t, s)
			clin.expectSilence(fxSilence)
			clin5.expectSilence(10 * time.Millisecond)
			fxAlive(t, s)
		})
	}

	run("T32_qos3", func(t *testing.T, s *testServer) {
		atkRejectPublish(t, s, false, nil, "36 0E 00 09 72 70 6D 2F 70 31 2F 68 72 12 34 78", "3E 0E 00 09 72 70 6D 2F 70 31 2F 68 72 12 34 78")
		atkRejectPublish(t, s, true, []byte{0x81}, "36 0F 00 09 72 70 6D 2F 70 31 2F 68 72 12 34 00 78")
	})

	run("T33_wildcards_in_topic_name", func(t *testing.T, s *testServer) {
		atkRejectPublish(t, s, false, nil, "30 0B 00 08 72 70 6D 2F 2B 2F 68 72 78", "30 0B 00 08 72 70 6D 2F 70 31 2F 23 78",
			atkHex(t, 0x32, atkStr("rpm/p1/+")+" 00 01 78"), atkHex(t, 0x30, atkStr("#")+" 78"), atkHex(t, 0x30, atkStr("rpm/p1/h#")+" 78"))
		atkRejectPublish(t, s, true, []byte{0x90, 0x81}, "30 0C 00 08 72 70 6D 2F 2B 2F 68 72 00 78", "30 0C 00 08 72 70 6D 2F 70 31 2F 23 00 78")
	})

	run("T35_ill_formed_utf8_topic", func(t *testing.T, s *testServer) {
		bad := []string{
			"30 0D 00 0A 72 70 6D 2F 70 31 2F ED A0 80 78",         // surrogate
			"30 0C 00 09 72 70 6D 2F 70 31 2F C0 AF 78",            // overlong '/'
			atkHex(t, 0x30, "00 08 72 70 6D 2F 70 31 2F 00 78"),    // U+0000 [MQTT-1.5.4-2]
			atkHex(t, 0x30, "00 09 72 70 6D 2F 70 31 2F F0 AA 78"), // truncated 4-byte sequence
			atkHex(t, 0x30, "00 08 72 70 6D 2F 70 31 2F FF 78"),    // 0xFF
		}
		atkRejectPublish(t, s, false, nil, bad...)
		for _, h := range bad { // 5.0 form: property length 00 after the topic
			b := unhex(t, h)
			n := int(b[2])<<8 | int(b[3])
			body := append(append(append([]byte{}, b[2:4+n]...), 0), b[4+n:]...)
			atkRejectPublish(t, s, true, []byte{0x81}, fmt.Sprintf("% X", atkPacket(0x30, body)))
		}
		// Siblings: ill-formed UTF-8 in 5.0 string properties of a PUBLISH.
		atkRejectPublish(t, s, true, []byte{0x81},
			atkHex(t, 0x30, atkStr("rpm/p1/hr")+" 07 26 00 01 00 00 01 76 78"), // User Property key U+0000
			atkHex(t, 0x30, atkStr("rpm/p1/hr")+" 06 03 00 03 ED A0 80 78"),    // Content Type surrogate
			atkHex(t, 0x30, atkStr("rpm/p1/hr")+" 06 08 00 03 C0 AF 61 78"),    // Response Topic overlong
		)
	})

	t.Run("T35_positive_control_valid_4byte_utf8", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		clin := fxClin(t, s, false)
		c, _ := fxLogin(t, s, fxC4p1)
		c.send("30 0E 00 0B 72 70 6D 2F 70 31 2F F0 AA 9B 94 78")
		clin.expect("30 0E 00 0B 72 70 6D 2F 70 31 2F F0 AA 9B 94 78")
		c.send("C0 00")
		c.expect("D0 00")
		fxAlive(t, s)
	})

	run("T35_ill_formed_utf8_in_connect", func(t *testing.T, s *testServer) {
		for _, cn := range []*packet.Connect{
			{Version: 4, CleanStart: true, KeepAlive: 60, ClientID: "p1\x00", HasUser: true, Username: "p1dev", HasPass: true, Password: []byte("pw1")},
			{Version: 4, CleanStart: true, KeepAlive: 60, ClientID: "p1\xed\xa0\x80", HasUser: true, Username: "p1dev", HasPass: true, Password: []byte("pw1")},
			{Version: 4, CleanStart: true, KeepAlive: 60, ClientID: "p1", HasUser: true, Username: "p1dev\x00", HasPass: true, Password: []byte("pw1")},
			{Version: 5, CleanStart: true, KeepAlive: 60, ClientID: "p1\xc0\xaf", HasUser: true, Username: "p1dev", HasPass: true, Password: []byte("pw1")},
			{Version: 4, CleanStart: true, KeepAlive: 60, ClientID: "p1", HasWill: true, Will: packet.Will{Topic: "rpm/p1/\x00"},
				HasUser: true, Username: "p1dev", HasPass: true, Password: []byte("pw1")},
		} {
			c := dialRaw(t, s.Addr)
			c.write(packet.AppendConnect(nil, cn))
			atkClosed(t, c, 2*time.Second, atkConnack(2, 4, 5, 0x80, 0x81, 0x85, 0x86, 0x90))
		}
	})

	run("T36_zero_length_topic", func(t *testing.T, s *testServer) {
		atkRejectPublish(t, s, false, nil, "30 03 00 00 78", "32 05 00 00 00 01 78")
		atkRejectPublish(t, s, true, []byte{0x82, 0x81}, "30 04 00 00 00 78", "32 06 00 00 00 01 00 78")
	})

	run("T37_packet_identifier_0", func(t *testing.T, s *testServer) {
		atkRejectPublish(t, s, false, nil, "32 0E 00 09 72 70 6D 2F 70 31 2F 68 72 00 00 78", "34 0E 00 09 72 70 6D 2F 70 31 2F 68 72 00 00 78")
		atkRejectPublish(t, s, true, []byte{0x82, 0x81}, "32 0F 00 09 72 70 6D 2F 70 31 2F 68 72 00 00 00 78",
			"34 0F 00 09 72 70 6D 2F 70 31 2F 68 72 00 00 00 78")
	})

	run("T38_dup_on_qos0", func(t *testing.T, s *testServer) {
		atkRejectPublish(t, s, false, nil, "38 0C 00 09 72 70 6D 2F 70 31 2F 68 72 78")
		atkRejectPublish(t, s, true, []byte{0x81}, "38 0D 00 09 72 70 6D 2F 70 31 2F 68 72 00 78")
	})

	t.Run("T39_dollar_topics", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		adm := fxAdmin(t, s, "adm", "#", "$foo/#", "$SYS/#", "+/broker/#")
		c, _ := fxLogin(t, s, fxC4p1)
		for _, x := range []struct{ pub, ack string }{
			{"32 0D 00 08 24 66 6F 6F 2F 62 61 72 00 05 78", "40 02 00 05"},
			{"32 17 00 12 24 53 59 53 2F 62 72 6F 6B 65 72 2F 75 70 74 69 6D 65 00 02 78", "40 02 00 02"},
		} {
			c.send(x.pub)
			got, err := c.readPacket(time.Second)
			if err != nil {
				c, _ = fxLogin(t, s, fxC4p1) // closed per [MQTT-3.3.5-2]
				continue
			}
			if !bytes.Equal(got, unhex(t, x.ack)) {
				t.Fatalf("got % x, want %s or close", got, x.ack)
			}
		}
		c5, _ := fxLogin(t, s, fxC5p1)
		c5.send("32 0E 00 08 24 66 6F 6F 2F 62 61 72 00 05 00 78")
		c5.expect("40 03 00 05 87")
		c5.send("32 18 00 12 24 53 59 53 2F 62 72 6F 6B 65 72 2F 75 70 74 69 6D 65 00 02 00 78")
		c5.expect("40 03 00 02 87")
		// QoS 0 and QoS 2 paths too.
		c5.send(atkHex(t, 0x30, atkStr("$SYS/broker/uptime")+" 00 78"))
		c5.send(atkHex(t, 0x34, atkStr("$SYS/broker/uptime")+" 00 03 00 78"))
		c5.expect("50 03 00 03 87")
		adm.expectSilence(fxSilence)
		c5.send("C0 00")
		c5.expect("D0 00")
		fxAlive(t, s)
	})

	run("T41_invalid_property_in_publish", func(t *testing.T, s *testServer) {
		atkRejectPublish(t, s, true, []byte{0x81},
			"32 16 00 09 72 70 6D 2F 70 31 2F 68 72 00 01 07 1C 00 04 65 76 69 6C 78",
			"32 11 00 09 72 70 6D 2F 70 31 2F 68 72 00 01 02 7F 00 78",
			// siblings: other properties not allowed in PUBLISH, QoS 0 path
			atkHex(t, 0x30, atkStr("rpm/p1/hr")+" 05 11 00 00 00 0A 78"), // Session Expiry
			atkHex(t, 0x30, atkStr("rpm/p1/hr")+" 03 21 00 05 78"),       // Receive Maximum
			atkHex(t, 0x30, atkStr("rpm/p1/hr")+" 05 18 00 00 00 01 78"), // Will Delay
			atkHex(t, 0x30, atkStr("rpm/p1/hr")+" 04 1F 00 01 61 78"),    // Reason String
		)
	})

	run("T42_subscription_identifier_in_publish", func(t *testing.T, s *testServer) {
		atkRejectPublish(t, s, true, []byte{0x82}, "32 11 00 09 72 70 6D 2F 70 31 2F 68 72 00 01 02 0B 01 78",
			atkHex(t, 0x30, atkStr("rpm/p1/hr")+" 02 0B 05 78"))
	})

	run("T43_bad_payload_format_or_response_topic", func(t *testing.T, s *testServer) {
		atkRejectPublish(t, s, true, []byte{0x82, 0x81},
			"32 11 00 09 72 70 6D 2F 70 31 2F 68 72 00 01 02 01 02 78",
			"32 17 00 09 72 70 6D 2F 70 31 2F 68 72 00 01 08 08 00 05 72 70 6D 2F 23 78",
			atkHex(t, 0x32, atkStr("rpm/p1/hr")+" 00 01 03 08 00 00 78"),          // empty Response Topic
			atkHex(t, 0x32, atkStr("rpm/p1/hr")+" 00 01 06 08 00 03 61 2F 2B 78"), // Response Topic a/+
		)
		// Payload Format Indicator 1 with a payload that is not UTF-8: refused, not delivered.
		c, _ := fxLogin(t, s, fxC5p1)
		c.send(atkHex(t, 0x32, atkStr("rpm/p1/hr")+" 00 01 02 01 01 FF FE"))
		p := atkRead(t, c, 2*time.Second)
		if !bytes.Equal(p, unhex(t, "40 03 00 01 99")) && !atkDisc(0x99)(p) {
			t.Fatalf("got % x, want PUBACK 0x99 or DISCONNECT 0x99", p)
		}
	})

	// §2.4 Topic Alias (5.0).
	run("T44_topic_alias_0", func(t *testing.T, s *testServer) {
		atkRejectPublish(t, s, true, []byte{0x94}, "30 10 00 09 72 70 6D 2F 70 31 2F 68 72 03 23 00 00 78",
			atkHex(t, 0x32, atkStr("rpm/p1/hr")+" 00 01 03 23 00 00 78"))
	})

	run("T45_topic_alias_above_maximum", func(t *testing.T, s *testServer) {
		atkRejectPublish(t, s, true, []byte{0x94}, "30 10 00 09 72 70 6D 2F 70 31 2F 68 72 03 23 00 0B 78",
			atkHex(t, 0x30, atkStr("rpm/p1/hr")+" 03 23 FF FF 78"),
			atkHex(t, 0x30, "00 00 03 23 00 0B 78"))
	})

	t.Run("T45_no_alias_to_client_without_topic_alias_maximum", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		clin5, _ := fxLogin(t, s, fxC5clin) // CONNECT without Topic Alias Maximum
		clin5.send(fxSUB5)
		clin5.expect("90 04 00 01 00 01")
		cn := &packet.Connect{Version: 5, CleanStart: true, KeepAlive: 60, ClientID: "c2", HasUser: true, Username: "clin",
			HasPass: true, Password: []byte("pwc")}
		cn.Props.TopicAliasMaximum = 2
		cn.Props.Set(packet.PropTopicAliasMaximum)
		clin2, _ := fxLoginB(t, s, packet.AppendConnect(nil, cn))
		clin2.send(fxSUB5)
		clin2.expect("90 04 00 01 00 01")
		// A client asking for 65535 aliases gets at most the server's cap (10): bounded table.
		cn.ClientID, cn.Props.TopicAliasMaximum = "c3", 65535
		clin3, _ := fxLoginB(t, s, packet.AppendConnect(nil, cn))
		clin3.send(fxSUB5)
		clin3.expect("90 04 00 01 00 01")
		c, _ := fxLogin(t, s, fxC4p1)
		for i := range 30 {
			name := fmt.Sprintf("rpm/p1/t%d", i%20)
			c.send(atkHex(t, 0x30, atkStr(name)+" 78"))
			clin5.expect(atkHex(t, 0x30, atkStr(name)+" 00 78"))
			for _, x := range []struct {
				c   *rawConn
				max byte
			}{{clin2, 2}, {clin3, 10}} {
				p := atkParsePub(t, x.c.expectType(packet.PUBLISH), true)
				if i := bytes.IndexByte(p.props, 0x23); i >= 0 && (i+2 >= len(p.props) || p.props[i+1] != 0 || p.props[i+2] == 0 || p.props[i+2] > x.max) {
					t.Fatalf("alias outside %d: props % x", x.max, p.props)
				}
				if p.topic == "" && bytes.IndexByte(p.props, 0x23) < 0 {
					t.Fatalf("empty topic without alias")
				}
			}
		}
		fxAlive(t, s)
	})

	t.Run("T47_alias_remapping_acl_bypass", func(t *testing.T) {
		s, a := fxStart(t, broker.Config{})
		p2, _ := fxLogin(t, s, fxC4p2)
		p2.send("82 0D 00 01 00 08 72 70 6D 2F 70 32 2F 23 01")
		p2.expect("90 03 00 01 01")
		c, _ := fxLogin(t, s, fxC5p1)
		c.send("30 11 00 09 72 70 6D 2F 70 31 2F 68 72 03 23 00 01 36 30")
		c.send("32 16 00 0A 72 70 6D 2F 70 32 2F 63 6D 64 00 03 03 23 00 01 6F 70 65 6E")
		got := atkRead(t, c, 2*time.Second)
		if atkDisc(0x87)(got) {
			atkClosed(t, c, 2*time.Second)
			c, _ = fxLogin(t, s, fxC5p1)
			c.send("30 11 00 09 72 70 6D 2F 70 31 2F 68 72 03 23 00 01 36 30")
		} else if !bytes.Equal(got, unhex(t, "40 03 00 03 87")) {
			t.Fatalf("step 2: got % x, want 40 03 00 03 87", got)
		}
		c.send("32 0C 00 00 00 04 03 23 00 01 6F 70 65 6E")
		got = atkRead(t, c, 2*time.Second)
		ok := false
		for _, w := range []string{"40 02 00 04", "40 03 00 04 00", "40 03 00 04 10", "40 03 00 04 87"} {
			ok = ok || bytes.Equal(got, unhex(t, w))
		}
		if !ok {
			t.Fatalf("step 3: got % x", got)
		}
		p2.expectSilence(fxSilence)
		// Revoke p1's write on rpm/p1/#: the alias resolves to a topic checked every time.
		a.Revoke("p1dev", "rpm/p1/#", false, true)
		c.send("32 0C 00 00 00 05 03 23 00 01 6F 70 65 6E")
		c.expect("40 03 00 05 87")
		// Aliases are per connection.
		c2, _ := fxLoginB(t, s, fxConnect(5, true, "p1b", "p1dev", "pw1"))
		c2.send("30 07 00 00 03 23 00 01 78")
		atkClosed(t, c2, 2*time.Second, atkDisc(0x82))
		p2.expectSilence(fxSilence)
		fxAlive(t, s)
	})
}
