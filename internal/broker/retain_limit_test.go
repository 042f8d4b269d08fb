package broker_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

func rlPublishRetained(t *testing.T, c *rawConn, topic, payload string, id uint16) {
	t.Helper()
	c.write(packet.AppendPublish(nil, &packet.Publish{QoS: 1, Retain: true, Topic: topic, PacketID: id, Payload: []byte(payload)}, packet.Version311))
	c.expect(fmt.Sprintf("40 02 %02X %02X", id>>8, id&0xff))
}

func rlRetainedTopics(t *testing.T, addr string) []string {
	t.Helper()
	c := dialRaw(t, addr)
	c.connect(&packet.Connect{Version: packet.Version311, CleanStart: true, KeepAlive: 30, ClientID: "reader"})
	c.write(packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: "r/#"}}}, packet.Version311))
	c.expectType(packet.SUBACK)
	var topics []string
	for {
		got, err := c.readPacket(300 * time.Millisecond)
		if err != nil {
			break
		}
		var p packet.Publish
		if err := packet.DecodePublish(&p, got[0]&0x0f, got[2:], packet.Version311); err != nil {
			t.Fatal(err)
		}
		topics = append(topics, p.Topic)
	}
	c.nc.Close()
	sort.Strings(topics)
	return topics
}

// MaxRetainedPerClient caps the retained messages one client id keeps; replacing its own or
// clearing one frees nothing else, and other clients are not affected. A QoS 1/2 retained
// message over the limit is refused, not acknowledged and dropped [MQTT-3.3.1-5]: a 3.1.1
// publisher is disconnected without PUBACK, a 5.0 one hears 0x97. A QoS 0 one over the
// limit still clears the message it replaces, so nobody gets a stale value [MQTT-3.3.1-7].
func TestRetainedPerClientLimit(t *testing.T) {
	s := startServer(t, broker.Config{MaxRetainedPerClient: 2})
	dialA := func() *rawConn {
		a := dialRaw(t, s.Addr)
		a.connect(&packet.Connect{Version: packet.Version311, CleanStart: true, KeepAlive: 30, ClientID: "a"})
		return a
	}
	a := dialA()
	rlPublishRetained(t, a, "r/1", "x", 1)
	rlPublishRetained(t, a, "r/2", "x", 2)
	a.write(packet.AppendPublish(nil, &packet.Publish{QoS: 1, Retain: true, Topic: "r/3", PacketID: 3, Payload: []byte("x")}, packet.Version311))
	a.expectClosed(2 * time.Second) // over the limit: refused, no PUBACK
	a = dialA()
	rlPublishRetained(t, a, "r/1", "y", 4) // replacing its own is fine
	b := dialRaw(t, s.Addr)
	b.connect(&packet.Connect{Version: packet.Version311, CleanStart: true, KeepAlive: 30, ClientID: "b"})
	rlPublishRetained(t, b, "r/4", "x", 1)
	if got := strings.Join(rlRetainedTopics(t, s.Addr), ","); got != "r/1,r/2,r/4" {
		t.Fatalf("retained = %s, want r/1,r/2,r/4", got)
	}
	rlPublishRetained(t, a, "r/2", "", 5) // clearing frees a slot
	rlPublishRetained(t, a, "r/5", "x", 6)
	if got := strings.Join(rlRetainedTopics(t, s.Addr), ","); got != "r/1,r/4,r/5" {
		t.Fatalf("retained = %s, want r/1,r/4,r/5", got)
	}

	// 5.0: Quota Exceeded, and the message b retained on r/4 stays.
	a5, _ := ftDial(t, s.Addr, packet.Version5, "a", nil)
	a5.write(packet.AppendPublish(nil, &packet.Publish{QoS: 1, Retain: true, Topic: "r/4", PacketID: 7, Payload: []byte("new")}, packet.Version5))
	if got := a5.expectType(packet.PUBACK); len(got) < 5 || got[4] != byte(packet.QuotaExceeded) {
		t.Fatalf("PUBACK % x, want reason 0x97", got)
	}
	if got := strings.Join(rlRetainedTopics(t, s.Addr), ","); got != "r/1,r/4,r/5" {
		t.Fatalf("retained = %s, want r/1,r/4,r/5", got)
	}
	// QoS 0 over the limit on r/4: b's old value is discarded, not kept under a newer one.
	a5.write(packet.AppendPublish(nil, &packet.Publish{Retain: true, Topic: "r/4", Payload: []byte("newer")}, packet.Version5))
	eventually(t, 2*time.Second, "r/4 to be cleared", func() bool {
		return strings.Join(rlRetainedTopics(t, s.Addr), ",") == "r/1,r/5"
	})
}
