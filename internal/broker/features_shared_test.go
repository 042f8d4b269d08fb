package broker_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// TestFtSharedFairDistribution5 (paho.golang): two members of $share/g/sh/# share 20
// messages: each message reaches exactly one member, each member gets some.
// §4.8.2 [MQTT-4.8.2-? one session per message]
func TestFtSharedFairDistribution5(t *testing.T) {
	s := startServer(t, broker.Config{})
	a, ain, _ := ftPaho5(t, s.Addr, "sh-a", nil, nil)
	ftPahoSub(t, a, nil, paho.SubscribeOptions{Topic: "$share/g/sh/#", QoS: 1})
	b, bin, _ := ftPaho5(t, s.Addr, "sh-b", nil, nil)
	ftPahoSub(t, b, nil, paho.SubscribeOptions{Topic: "$share/g/sh/#", QoS: 1})
	pub, _, _ := ftPaho5(t, s.Addr, "sh-pub", nil, nil)
	const n = 20
	for i := range n {
		if _, err := pub.Publish(ftCtx(t), &paho.Publish{Topic: "sh/t", QoS: 1, Payload: fmt.Appendf(nil, "%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "all shared messages", func() bool { return len(ain.get())+len(bin.get()) >= n })
	var all []string
	for _, m := range append(ain.get(), bin.get()...) {
		all = append(all, string(m.Payload))
	}
	slices.Sort(all)
	if len(all) != n || len(slices.Compact(slices.Clone(all))) != n {
		t.Fatalf("received %d messages (%v), want each of %d exactly once", len(all), all, n)
	}
	if len(ain.get()) == 0 || len(bin.get()) == 0 {
		t.Errorf("distribution a=%d b=%d, want both members to get some", len(ain.get()), len(bin.get()))
	}
	checkAlive(t, s.Addr)
}

// TestFtSharedRedeliveryOnDisconnect5: member A receives QoS 1 messages and closes its
// connection (session expiry 0) without acknowledging; member B gets them.
// §4.8.2 (the Server SHOULD send it to another client of the shared subscription)
func TestFtSharedRedeliveryOnDisconnect5(t *testing.T) {
	s := startServer(t, broker.Config{})
	a, _ := ftDial(t, s.Addr, ft5, "shr-a", nil)
	a.ftSub(ft5, "$share/g/shr/#", 1)
	pub, _ := ftDial(t, s.Addr, ft5, "shr-pub", nil)
	// While A is the only member, everything goes to A.
	for i := range 3 {
		pub.ftPub1(ft5, &packet.Publish{QoS: 1, Topic: "shr/t", PacketID: uint16(i + 1), Payload: fmt.Appendf(nil, "m%d", i)})
	}
	for i := range 3 {
		if m := a.ftReadPublish(ft5); string(m.Payload) != fmt.Sprintf("m%d", i) {
			t.Fatalf("A got %q", m.Payload)
		}
	}
	b, _ := ftDial(t, s.Addr, ft5, "shr-b", nil)
	b.ftSub(ft5, "$share/g/shr/#", 1)
	a.nc.Close() // unacknowledged
	var got []string
	for range 3 {
		m := b.ftReadPublish(ft5)
		got = append(got, string(m.Payload))
		b.ftAck(ft5, packet.PUBACK, m.PacketID)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"m0", "m1", "m2"}) {
		t.Fatalf("B got %v, want m0 m1 m2", got)
	}
	b.expectSilence(200 * time.Millisecond)
	checkAlive(t, s.Addr)
}

// TestFtSharedNoRetained5: retained messages are not sent for a shared subscription; a
// shared subscription with No Local is a protocol error.
// §3.8.3.1 (shared: retained not sent) [MQTT-3.8.3-4]
func TestFtSharedNoRetained5(t *testing.T) {
	s := startServer(t, broker.Config{})
	pub, _ := ftDial(t, s.Addr, ft5, "shn-pub", nil)
	pub.ftPub1(ft5, &packet.Publish{QoS: 1, Retain: true, Topic: "shn/t", PacketID: 1, Payload: []byte("kept")})
	c, _ := ftDial(t, s.Addr, ft5, "shn", nil)
	c.ftSub(ft5, "$share/g/shn/#", 1)
	c.expectSilence(300 * time.Millisecond)
	c.write(packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 2, Subs: []packet.Subscription{{Filter: "$share/g/x", NoLocal: true}}}, ft5))
	if d := c.ftReadDisconnect(); d.Reason != packet.ProtocolError {
		t.Errorf("No Local on a shared subscription: DISCONNECT %#x, want 0x82", byte(d.Reason))
	}
	c.expectClosed(2 * time.Second)
	checkAlive(t, s.Addr)
}
