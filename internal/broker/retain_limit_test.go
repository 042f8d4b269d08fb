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
// clearing one frees nothing else, and other clients are not affected.
func TestRetainedPerClientLimit(t *testing.T) {
	s := startServer(t, broker.Config{MaxRetainedPerClient: 2})
	a := dialRaw(t, s.Addr)
	a.connect(&packet.Connect{Version: packet.Version311, CleanStart: true, KeepAlive: 30, ClientID: "a"})
	rlPublishRetained(t, a, "r/1", "x", 1)
	rlPublishRetained(t, a, "r/2", "x", 2)
	rlPublishRetained(t, a, "r/3", "x", 3) // over the limit: delivered live, not retained
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
}
