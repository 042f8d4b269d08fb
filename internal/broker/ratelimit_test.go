package broker_test

import (
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// A client publishing faster than PublishRate is slowed down, not cut off: every publication
// is acknowledged, and no more than the burst plus the rate arrive early.
func TestPublishRatePaces(t *testing.T) {
	const rate, n = 20.0, 60 // burst 40
	s := startServer(t, broker.Config{PublishRate: rate})
	c := dialRaw(t, s.Addr)
	c.connect(&packet.Connect{Version: packet.Version311, CleanStart: true, KeepAlive: 30, ClientID: "fast"})
	start := time.Now()
	var buf []byte
	for i := range n {
		buf = packet.AppendPublish(buf, &packet.Publish{QoS: 1, PacketID: uint16(i + 1), Topic: "r/x", Payload: []byte("v")}, packet.Version311)
	}
	c.write(buf)
	acked := 0
	early := 0
	for acked < n {
		if _, err := c.readPacket(5 * time.Second); err != nil {
			t.Fatalf("after %d acks: %v (the client must be slowed down, not disconnected)", acked, err)
		}
		acked++
		if time.Since(start) < 500*time.Millisecond {
			early++
		}
	}
	// Within the first half second at most the burst (40) and 0.5 s of rate (10) can pass.
	if limit := 2*int(rate) + int(rate/2) + 1; early > limit {
		t.Fatalf("%d publications acknowledged in the first 500 ms, want at most %d", early, limit)
	}
}
