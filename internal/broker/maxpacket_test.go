package broker_test

import (
	"fmt"
	"io"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// readAll returns every byte the server sends until it closes the connection.
func readAll(t *testing.T, c *rawConn) []byte {
	t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c.nc)
	if err != nil {
		t.Fatalf("connection not closed: %v (received % x)", err, b)
	}
	return b
}

// [MQTT-3.1.2-24] The server never sends a packet larger than the client's Maximum Packet
// Size, not even during the handshake: an AUTH challenge or a CONNACK that would not fit
// ends the connection instead.
func TestMaxPacketSizeHandshake(t *testing.T) {
	s := startServer(t, broker.Config{Authenticator: challengeAuth{}})

	t.Run("AUTH too large", func(t *testing.T) {
		c := dialRaw(t, s.Addr)
		p := crConnect()
		p.Props.MaximumPacketSize = 20 // the AUTH challenge is 22 bytes
		p.Props.Set(packet.PropMaximumPacketSize)
		c.write(packet.AppendConnect(nil, p))
		if b := readAll(t, c); len(b) > 20 {
			t.Fatalf("server sent % x (%d bytes) to a client that accepts 20 [MQTT-3.1.2-24]", b, len(b))
		}
	})

	t.Run("CONNACK too large", func(t *testing.T) {
		c := dialRaw(t, s.Addr)
		p := crConnect()
		p.Props.MaximumPacketSize = 30 // the challenge fits; the CONNACK with "welcome" does not
		p.Props.Set(packet.PropMaximumPacketSize)
		c.write(packet.AppendConnect(nil, p))
		if got := c.expectType(packet.AUTH); len(got) > 30 {
			t.Fatalf("AUTH of %d bytes", len(got))
		}
		c.write(authPacket("nonce:secret"))
		got := readAll(t, c)
		if len(got) > 30 {
			t.Fatalf("server sent % x (%d bytes) to a client that accepts 30 [MQTT-3.1.2-24]", got, len(got))
		}
		if len(got) > 0 && (packet.Type(got[0]>>4) != packet.CONNACK || got[3] < 0x80) {
			t.Fatalf("got % x, want nothing or a refusing CONNACK", got)
		}
	})

	t.Run("fits", func(t *testing.T) {
		c := dialRaw(t, s.Addr)
		p := crConnect()
		p.Props.MaximumPacketSize = 64
		p.Props.Set(packet.PropMaximumPacketSize)
		c.write(packet.AppendConnect(nil, p))
		c.expectType(packet.AUTH)
		c.write(authPacket("nonce:secret"))
		if ack := c.expectType(packet.CONNACK); ack[3] != 0 || len(ack) > 64 {
			t.Fatalf("CONNACK % x, want success within 64 bytes", ack)
		}
	})
}

// [MQTT-3.1.2-24] A SUBACK larger than the client's Maximum Packet Size (a client that
// subscribes to more filters than its own limit lets it hear about) is discarded; the
// subscriptions are made and the connection goes on.
func TestMaxPacketSizeSuback(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub, _ := ftDial(t, s.Addr, packet.Version5, "mps-sub", func(p *packet.Connect) {
		p.Props.MaximumPacketSize = 16
		p.Props.Set(packet.PropMaximumPacketSize)
	})
	var subs []packet.Subscription
	for i := range 20 {
		subs = append(subs, packet.Subscription{Filter: fmt.Sprintf("mps/%d", i)})
	}
	sub.write(packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 7, Subs: subs}, packet.Version5)) // SUBACK: 26 bytes
	sub.send("C0 00")
	if got := sub.expectType(packet.PINGRESP); len(got) != 2 {
		t.Fatalf("PINGRESP % x", got)
	}
	// The subscriptions exist: a message on one of them arrives (it fits).
	pub, _ := ftDial(t, s.Addr, packet.Version5, "mps-pub", nil)
	pub.ftPublish(packet.Version5, &packet.Publish{Topic: "mps/19", Payload: []byte("x")})
	if m := sub.ftReadPublish(packet.Version5); m.Topic != "mps/19" {
		t.Fatalf("got %q", m.Topic)
	}
}
