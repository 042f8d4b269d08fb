package broker_test

import (
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// Kick with purge disconnects a 5.0 client with the reason, publishes no will, and ends
// its session: a reconnect finds no session and nothing queued is delivered.
func TestKickPurgesSession(t *testing.T) {
	s := startServer(t, broker.Config{})
	watcher := dialRaw(t, s.Addr)
	watcher.connect(&packet.Connect{Version: packet.Version311, CleanStart: true, KeepAlive: 30, ClientID: "w"})
	watcher.send("82 08 00 01 00 03 77 2F 23 00") // SUBSCRIBE w/# QoS 0: would see the will
	watcher.expect("90 03 00 01 00")

	dev := dialRaw(t, s.Addr)
	p := &packet.Connect{Version: packet.Version5, KeepAlive: 30, ClientID: "dev1", HasWill: true, Will: packet.Will{Topic: "w/dev1", Payload: []byte("gone")}}
	p.Props.SessionExpiry = 3600
	p.Props.Set(packet.PropSessionExpiry)
	dev.connect(p)
	dev.send("82 09 00 01 00 00 03 63 2F 31 01") // SUBSCRIBE c/1 QoS 1
	dev.expectType(packet.SUBACK)

	if !s.Kick("dev1", packet.AdministrativeAction, true) {
		t.Fatal("Kick found no session")
	}
	dev.expectClosed(2*time.Second, "E0 01 98")
	watcher.expectSilence(300 * time.Millisecond) // no will

	// Messages for the purged session are not kept.
	pub := dialRaw(t, s.Addr)
	pub.connect(&packet.Connect{Version: packet.Version311, CleanStart: true, KeepAlive: 30, ClientID: "p"})
	pub.send("32 08 00 03 63 2F 31 00 01 78")
	pub.expect("40 02 00 01")

	again := dialRaw(t, s.Addr)
	p.CleanStart, p.HasWill = false, false
	again.write(packet.AppendConnect(nil, p))
	ack := again.expectType(packet.CONNACK)
	if ack[2] != 0 {
		t.Fatalf("CONNACK % x: session present after purge", ack)
	}
	again.expectSilence(300 * time.Millisecond)
	if s.Kick("nobody", packet.AdministrativeAction, true) {
		t.Fatal("Kick of an unknown client reported a session")
	}
}
