package broker_test

import (
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// Past the memory budget the broker sheds load without acknowledging anything it drops:
// new connections get Server Busy, 5.0 QoS 1 publications Quota Exceeded, and a 3.1.1
// QoS 1 publisher is disconnected unacknowledged.
func TestMemoryBudgetSheds(t *testing.T) {
	s := startServer(t, broker.Config{MemoryBudget: 1}) // any heap is over budget
	v5 := dialRaw(t, s.Addr)
	v3 := dialRaw(t, s.Addr)
	// Connected before the first sample (the janitor samples every 250 ms) ...
	v5.connect(&packet.Connect{Version: packet.Version5, CleanStart: true, KeepAlive: 30, ClientID: "b5"})
	v3.connect(&packet.Connect{Version: packet.Version311, CleanStart: true, KeepAlive: 30, ClientID: "b3"})
	// ... until a fresh connection is refused.
	eventually(t, 5*time.Second, "the overload state", func() bool {
		c := dialRaw(t, s.Addr)
		defer c.nc.Close()
		c.write(packet.AppendConnect(nil, &packet.Connect{Version: packet.Version5, CleanStart: true, KeepAlive: 30, ClientID: "late"}))
		got, err := c.readPacket(time.Second)
		return err == nil && len(got) == 5 && got[3] == byte(packet.ServerBusy)
	})
	v5.send("32 09 00 03 61 2F 62 00 01 00 78") // QoS 1 a/b id 1, no properties
	v5.expect("40 03 00 01 97")
	v3.send("32 08 00 03 61 2F 62 00 01 78")
	v3.expectClosed(2 * time.Second)
	c := dialRaw(t, s.Addr)
	c.write(packet.AppendConnect(nil, &packet.Connect{Version: packet.Version311, CleanStart: true, KeepAlive: 30, ClientID: "late3"}))
	c.expectClosed(2*time.Second, "20 02 00 03")
}
