package broker_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// [MQTT-3.2.0-1] [MQTT-3.14.0-1] Concurrent CONNECTs with one client id take the session over
// from each other: whatever a connection receives starts with its CONNACK, never with the
// DISCONNECT 0x8E of a takeover that raced its handshake.
func TestConnackBeforeDisconnect(t *testing.T) {
	s := startServer(t, broker.Config{ConnectionRate: 1e9, ConnectionBurst: 1e9, MaxConnectionsPerAddress: 1e6})
	connect := packet.AppendConnect(nil, &packet.Connect{Version: packet.Version5, CleanStart: true, KeepAlive: 30, ClientID: "race"})
	for round := range 200 {
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				nc, err := net.Dial("tcp", s.Addr)
				if err != nil {
					t.Error(err)
					return
				}
				defer nc.Close()
				c := &rawConn{t: t, nc: nc}
				nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := nc.Write(connect); err != nil {
					return
				}
				first, err := c.readPacket(2 * time.Second)
				if err != nil {
					return // closed before anything was sent, or the winner staying silent
				}
				if packet.Type(first[0]>>4) != packet.CONNACK {
					t.Errorf("round %d: first packet % x, want CONNACK", round, first)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
}

// boundAuth binds every connection to the client id "dev-7", as a device certificate does.
type boundAuth struct{}

func (boundAuth) Authenticate(_ context.Context, req *broker.ConnectRequest) (*broker.Client, error) {
	return &broker.Client{ClientID: "dev-7", Username: req.Username}, nil
}

// [MQTT-3.2.2-16] [MQTT-3.1.3-6] An empty client id gets an Assigned Client Identifier no
// session uses: when the identity's bound id has a session, the CONNECT is refused (0x85)
// rather than silently resuming or taking over that session.
func TestAssignedClientIDIsUnused(t *testing.T) {
	s := startServer(t, broker.Config{Authenticator: boundAuth{}})
	empty := func(p *packet.Connect) { p.ClientID = "" }
	c, ack := ftDial(t, s.Addr, packet.Version5, "", empty)
	if ack.Props.AssignedClientID != "dev-7" {
		t.Fatalf("assigned %q, want dev-7", ack.Props.AssignedClientID)
	}
	c.nc.Close()
	eventually(t, 2*time.Second, "the clean session to end", func() bool {
		d := dialRaw(t, s.Addr)
		ok := d.ftConnect(&packet.Connect{Version: packet.Version5, CleanStart: true, KeepAlive: 30}).Reason == packet.Success
		d.nc.Close()
		return ok
	})
	p, _ := ftDial(t, s.Addr, packet.Version5, "dev-7", func(p *packet.Connect) {
		p.Props.SessionExpiry = 60
		p.Props.Set(packet.PropSessionExpiry)
	})
	p.write(packet.AppendDisconnect(nil, &packet.Disconnect{}, packet.Version5))
	p.expectClosed(2 * time.Second)
	for _, v := range []byte{packet.Version5, packet.Version311} {
		d := dialRaw(t, s.Addr)
		ack := d.ftConnect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 30})
		if ack.Reason != packet.ClientIdentifierNotValid { // 3.1.1: return code 2, decoded as 0x85
			t.Fatalf("version %d: CONNACK %#x with an empty id whose bound id has a session, want client id not valid", v, byte(ack.Reason))
		}
	}
}

// [MQTT-3.1.4-1] (3.1.1) A will topic with wildcards makes the CONNECT malformed: a 3.1.1
// client is closed without a CONNACK (it has no code for it); a 5.0 one hears 0x90.
func TestWillTopicInvalid(t *testing.T) {
	s := startServer(t, broker.Config{})
	for _, v := range []byte{packet.Version311, packet.Version5} {
		c := dialRaw(t, s.Addr)
		p := &packet.Connect{Version: v, CleanStart: true, KeepAlive: 30, ClientID: "wt", HasWill: true}
		p.Will.Topic, p.Will.Payload = "a/#", []byte("x")
		c.write(packet.AppendConnect(nil, p))
		if v == packet.Version5 {
			c.expectClosed(2*time.Second, "20 03 00 90 00")
		} else {
			c.expectClosed(2 * time.Second)
		}
	}
	checkAlive(t, s.Addr)
}
