package broker_test

import (
	"strings"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// TestFtSysTopics: a "#" or "+/..." subscriber never receives $SYS messages; a "$SYS/#"
// subscriber receives the broker statistics. [MQTT-4.7.2-1] §4.7.2
func TestFtSysTopics(t *testing.T) {
	ftVersions(t, func(t *testing.T, v byte) {
		s := startServer(t, broker.Config{SysInterval: 100 * time.Millisecond})
		all, _ := ftDial(t, s.Addr, v, "sys-all", nil)
		all.ftSub(v, "#", 0)
		plus, _ := ftDial(t, s.Addr, v, "sys-plus", nil)
		plus.ftSub(v, "+/broker/#", 0)
		sys, _ := ftDial(t, s.Addr, v, "sys-sys", nil)
		sys.ftSub(v, "$SYS/#", 0)
		seen := map[string]string{}
		deadline := time.Now().Add(3 * time.Second)
		for len(seen) < 5 && time.Now().Before(deadline) {
			m := sys.ftReadPublish(v)
			if !strings.HasPrefix(m.Topic, "$SYS/") {
				t.Fatalf("$SYS/# subscriber got %s", m.Topic)
			}
			seen[m.Topic] = string(m.Payload)
		}
		for _, tp := range []string{"$SYS/broker/version", "$SYS/broker/uptime", "$SYS/broker/clients/connected"} {
			if _, ok := seen[tp]; !ok {
				t.Errorf("no %s among %v", tp, seen)
			}
		}
		// Statistics were published at least once during the wait above; a marker now
		// must be the first thing the wildcard subscribers got.
		pub, _ := ftDial(t, s.Addr, v, "sys-pub", nil)
		pub.ftPublish(v, &packet.Publish{Topic: "marker", Payload: []byte("m")})
		if m := all.ftReadPublish(v); m.Topic != "marker" {
			t.Fatalf("# subscriber got %s, want only the marker [MQTT-4.7.2-1]", m.Topic)
		}
		plus.ftPublish(v, &packet.Publish{Topic: "x/broker/y", Payload: []byte("m")})
		if m := plus.ftReadPublish(v); m.Topic != "x/broker/y" {
			t.Fatalf("+/broker/# subscriber got %s, want only x/broker/y [MQTT-4.7.2-1]", m.Topic)
		}
		checkAlive(t, s.Addr)
	})
}

// TestFtKeepAliveEnforced: a client with keep alive 1 s that goes silent is disconnected
// after one and a half keep alive periods (5.0: optionally DISCONNECT 0x8D first).
// [MQTT-3.1.2-22] (3.1.1 [MQTT-3.1.2-24])
func TestFtKeepAliveEnforced(t *testing.T) {
	ftVersions(t, func(t *testing.T, v byte) {
		s := startServer(t, broker.Config{})
		c, _ := ftDial(t, s.Addr, v, "ka", func(p *packet.Connect) { p.KeepAlive = 1 })
		start := time.Now()
		c.expectClosed(3*time.Second, "E0 01 8D", "E0 02 8D 00")
		if d := time.Since(start); d < time.Second {
			t.Errorf("closed after %v, before the keep alive period", d)
		}
		checkAlive(t, s.Addr)
	})
}

// TestFtPing: PINGREQ is answered with PINGRESP, and pings keep a 1 s keep alive
// connection open past 1.5 s. [MQTT-3.12.4-1] [MQTT-3.1.2-22]
func TestFtPing(t *testing.T) {
	ftVersions(t, func(t *testing.T, v byte) {
		s := startServer(t, broker.Config{})
		c, _ := ftDial(t, s.Addr, v, "ping", func(p *packet.Connect) { p.KeepAlive = 1 })
		for range 4 { // 4 × 450 ms: past 1.5 × keep alive
			c.send("C0 00")
			c.expect("D0 00")
			time.Sleep(450 * time.Millisecond) // pacing the client's own pings, not waiting for an event
		}
		c.send("C0 00")
		c.expect("D0 00")
		checkAlive(t, s.Addr)
	})
}
