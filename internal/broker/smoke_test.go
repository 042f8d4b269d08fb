package broker_test

import (
	"testing"
	"time"

	"vitalmq/internal/broker"
)

func TestRawPublishSubscribe311(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub := dialRaw(t, s.Addr)
	sub.send("10 0D 00 04 4D 51 54 54 04 02 00 3C 00 01 73") // CONNECT clean, id "s"
	sub.expect("20 02 00 00")
	sub.send("82 08 00 01 00 03 61 2F 62 01") // SUBSCRIBE a/b QoS 1
	sub.expect("90 03 00 01 01")
	pub := dialRaw(t, s.Addr)
	pub.send("10 0D 00 04 4D 51 54 54 04 02 00 3C 00 01 70")
	pub.expect("20 02 00 00")
	pub.send("32 08 00 03 61 2F 62 00 07 78") // PUBLISH a/b QoS1 id 7 "x"
	pub.expect("40 02 00 07")
	got := sub.expectType(0x3)
	if len(got) != 10 || got[0] != 0x32 {
		t.Fatalf("delivered % x, want a QoS 1 PUBLISH", got)
	}
	sub.write([]byte{0x40, 2, got[7], got[8]})
	pub.send("E0 00")
	pub.expectClosed(time.Second)
	checkAlive(t, s.Addr)
}
