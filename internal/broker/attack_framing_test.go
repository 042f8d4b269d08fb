package broker_test

// CASES §2.1: framing and fixed header.

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

func TestAttackFraming(t *testing.T) {
	t.Run("T01_five_byte_remaining_length", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		c := dialRaw(t, s.Addr)
		c.send("10 80 80 80 80 00")
		atkClosed(t, c, 2*time.Second)

		// Variant: 5-byte VBI as the 5.0 CONNECT Properties Length.
		c = dialRaw(t, s.Addr)
		c.send("10 13 00 04 4D 51 54 54 05 02 00 3C 80 80 80 80 00 00 02 70 31")
		atkClosed(t, c, 2*time.Second, atkExact(t, "20 03 00 81 00"))

		// Siblings after CONNECT: 5-byte Remaining Length on PUBLISH (3.1.1 and 5.0), and a
		// 5-byte VBI as a 5.0 PUBLISH Property Length.
		clin := fxClin(t, s, false)
		c, _ = fxLogin(t, s, fxC4p1)
		c.send("30 80 80 80 80 00")
		atkClosed(t, c, 2*time.Second)
		c, _ = fxLogin(t, s, fxC5p1)
		c.send("30 80 80 80 80 00")
		atkClosed(t, c, 2*time.Second, atkDisc(0x81))
		c, _ = fxLogin(t, s, fxC5p1)
		c.send(atkHex(t, 0x30, "00 09 72 70 6D 2F 70 31 2F 68 72 80 80 80 80 00 78"))
		atkClosed(t, c, 2*time.Second, atkDisc(0x81))
		clin.expectSilence(fxSilence)
		fxAlive(t, s)
	})

	t.Run("T02_endless_vbi_continuation", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		c := dialRaw(t, s.Addr)
		flood := append([]byte{0x10}, bytes.Repeat([]byte{0x80}, 4<<20)...)
		done := make(chan struct{})
		go func() { defer close(done); atkWriteAll(c, flood) }()
		atkClosed(t, c, 3*time.Second)
		c.nc.Close()
		<-done
		fxAlive(t, s)
	})

	t.Run("T03_vbi_above_max", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		c := dialRaw(t, s.Addr)
		c.send("10 FF FF FF FF 7F")
		atkClosed(t, c, 2*time.Second)
		// Post-auth too: the largest 4-byte value (268,435,455) exceeds the packet limit.
		c, _ = fxLogin(t, s, fxC4p1)
		c.send("30 FF FF FF 7F")
		atkClosed(t, c, 2*time.Second)
		fxAlive(t, s)
	})

	t.Run("T05_preauth_giant_connect", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{ConnectTimeout: 2 * time.Second})
		const n = 50 // scaled from 1,000: the property is the pre-auth cap, not the count
		conns := make([]*rawConn, n)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := range conns {
			c := dialRaw(t, s.Addr)
			conns[i] = c
			c.send("10 FF FF FF 7F")
			wg.Go(func() { // slow drip of 00
				for {
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
					c.nc.SetWriteDeadline(time.Now().Add(time.Second))
					if _, err := c.nc.Write([]byte{0}); err != nil {
						return
					}
				}
			})
		}
		// A legitimate client in parallel gets its CONNACK within 1 s.
		p1 := dialRaw(t, s.Addr)
		p1.send(fxC4p1)
		if got, err := p1.readPacket(time.Second); err != nil || !bytes.Equal(got, []byte{0x20, 2, 0, 0}) {
			t.Fatalf("legitimate CONNACK % x, %v", got, err)
		}
		// Closed well before the CONNECT deadline (2 s here): from the fixed header alone.
		for _, c := range conns {
			atkClosed(t, c, time.Second)
		}
		close(stop)
		wg.Wait()
		fxAlive(t, s)
	})

	t.Run("T06_non_connect_first_packet_huge", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		ones := bytes.Repeat([]byte{1}, 1<<20)
		for _, b := range []byte{0x20, 0x30, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xA2, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0} {
			t.Run(fmt.Sprintf("%02X", b), func(t *testing.T) {
				c := dialRaw(t, s.Addr)
				c.write([]byte{b, 0x80, 0x80, 0x80, 0x74})
				done := make(chan struct{})
				go func() { defer close(done); atkWriteAll(c, ones) }()
				atkClosed(t, c, 2*time.Second)
				c.nc.Close()
				<-done
			})
		}
		fxAlive(t, s)
	})

	t.Run("T07_small_non_connect_first_packet", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		for _, h := range []string{"20 00", "30 03 00 01 61", "C0 00", "E0 00", "F0 00", "00 00", "82 06 00 01 00 01 61 00",
			"40 02 00 01", "A2 05 00 01 00 01 61", "20 02 00 00"} {
			t.Run(h, func(t *testing.T) {
				c := dialRaw(t, s.Addr)
				c.send(h)
				atkClosed(t, c, 2*time.Second)
			})
		}
		fxAlive(t, s)
	})

	t.Run("T08_reserved_packet_types_after_connect", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		for _, h := range []string{"00 00", "F0 00"} {
			c, _ := fxLogin(t, s, fxC4p1)
			c.send(h)
			atkClosed(t, c, 2*time.Second)
		}
		c, _ := fxLogin(t, s, fxC5p1)
		c.send("00 00")
		atkClosed(t, c, 2*time.Second, atkDisc(0x81, 0x82))
		fxAlive(t, s)
	})

	t.Run("T09_invalid_fixed_header_flags", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		clin := fxClin(t, s, false)
		for _, h := range []string{
			"80 0D 00 09 00 08 72 70 6D 2F 70 31 2F 23 00", // (a) SUBSCRIBE flags 0
			"60 02 00 2A", // (b) PUBREL flags 0
			"A0 0C 00 01 00 08 72 70 6D 2F 70 31 2F 23", // (c) UNSUBSCRIBE flags 0
			// siblings: every other type with flags that must be 0 (or 2)
			"41 02 00 01", "51 02 00 01", "71 02 00 01", "C1 00", "E1 00", "83 0D 00 09 00 08 72 70 6D 2F 70 31 2F 23 00",
			"68 02 00 2A",
			"C0 01 00", // PINGREQ with a body
		} {
			c, _ := fxLogin(t, s, fxC4p1)
			c.send(h)
			atkClosed(t, c, 2*time.Second)
		}
		for _, h := range []string{
			"80 0E 00 09 00 00 08 72 70 6D 2F 70 31 2F 23 00",
			"60 02 00 2A",
			"A0 0D 00 01 00 00 08 72 70 6D 2F 70 31 2F 23",
			"C1 00", "E1 00",
		} {
			c, _ := fxLogin(t, s, fxC5p1)
			c.send(h)
			atkClosed(t, c, 2*time.Second, atkDisc(0x81))
		}
		// (d) CONNECT with flags 1 on a fresh socket.
		c := dialRaw(t, s.Addr)
		c.send("11 1A 00 04 4D 51 54 54 04 C2 00 3C 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31")
		atkClosed(t, c, 2*time.Second)
		clin.expectSilence(fxSilence)
		fxAlive(t, s)
	})

	t.Run("T11_truncated_packet_then_silence", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{ConnectTimeout: time.Second})
		// (a) truncated CONNECT: closed at the CONNECT deadline (1 s here).
		c := dialRaw(t, s.Addr)
		c.send("10 1A 00 04 4D 51 54 54 04 C2 00 3C")
		atkClosed(t, c, 3*time.Second)
		// (b) after CONNECT (keep alive 1 s): a PUBLISH announcing 4,095 bytes, 3 sent.
		c, _ = fxLogin(t, s, "10 1A 00 04 4D 51 54 54 04 C2 00 01 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31")
		c.send("30 FF 1F 00 09 72")
		atkClosed(t, c, 4*time.Second)
		fxAlive(t, s)
	})

	t.Run("T12_packet_above_maximum_packet_size", func(t *testing.T) {
		s, _ := fxStart(t, broker.Config{})
		clin := fxClin(t, s, false)
		c, ack := fxLogin(t, s, fxC5p1)
		for _, p := range []string{"27 00 04 00 00", "22 00 0A", "21 00 20"} {
			if !atkHasProp(ack, p) {
				t.Errorf("CONNACK % x lacks property %s", ack, p)
			}
		}
		c.send("30 FF FF 7F")
		atkClosed(t, c, time.Second, atkDisc(0x95))
		c, _ = fxLogin(t, s, fxC4p1)
		c.send("30 FF FF 7F")
		atkClosed(t, c, time.Second)
		// Boundary: a header announcing exactly 256 KiB in all is not refused from the header...
		c, _ = fxLogin(t, s, fxC5p1)
		c.write([]byte{0x30, 0xFC, 0xFF, 0x0F}) // Remaining Length 262,140: 262,144 bytes in all
		c.expectSilence(100 * time.Millisecond)
		c.nc.Close()
		// ... one byte more is.
		c, _ = fxLogin(t, s, fxC5p1)
		c.write([]byte{0x30, 0xFD, 0xFF, 0x0F}) // 262,141 remaining: 262,145 bytes in all
		atkClosed(t, c, time.Second, atkDisc(0x95))
		clin.expectSilence(fxSilence)
		fxAlive(t, s)
	})

	t.Run("T12_sibling_client_maximum_packet_size", func(t *testing.T) {
		// The reverse direction: the server never sends a packet larger than the client's
		// Maximum Packet Size, neither a delivery ([MQTT-3.1.2-24]) nor its own DISCONNECT
		// with a Reason String ([MQTT-3.14.2-3]).
		s, _ := fxStart(t, broker.Config{})
		small := func(id string, mps uint32) *rawConn {
			cn := &packet.Connect{Version: 5, CleanStart: true, KeepAlive: 60, ClientID: id, HasUser: true, Username: "clin",
				HasPass: true, Password: []byte("pwc")}
			cn.Props.MaximumPacketSize = mps
			cn.Props.Set(packet.PropMaximumPacketSize)
			c, _ := fxLoginB(t, s, packet.AppendConnect(nil, cn))
			return c
		}
		c := small("c1", 20)
		c.send(fxSUB5)
		c.expect("90 04 00 01 00 01")
		p1, _ := fxLogin(t, s, fxC4p1)
		p1.send(atkHex(t, 0x30, atkStr("rpm/p1/hr")+" 41 42 43 44 45 46 47 48 49 4A")) // 24 bytes as 5.0 PUBLISH
		p1.send(atkHex(t, 0x30, atkStr("rpm/p1/hr")+" 41"))                            // 15 bytes
		c.expect(atkHex(t, 0x30, atkStr("rpm/p1/hr")+" 00 41"))
		c.expectSilence(fxSilence)
		// A protocol error: the DISCONNECT, if any, fits in 20 bytes.
		c.send("30 80 80 80 80 00")
		got, open := atkDrain(c, 2*time.Second)
		if open {
			t.Fatal("connection still open")
		}
		for _, p := range atkSplit(got) {
			if len(p) > 20 || p[0] != 0xE0 {
				t.Fatalf("got %d-byte packet % x, client Maximum Packet Size 20", len(p), p)
			}
		}
		fxAlive(t, s)
	})
}
