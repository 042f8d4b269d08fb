package broker_test

import (
	"io"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// FuzzConnection sends arbitrary bytes to a live broker, before CONNECT and after it (3.1.1
// and 5.0), and checks that the broker stays up and serves a fresh client: no input may
// crash the process or wedge it.
func FuzzConnection(f *testing.F) {
	seeds := []string{
		"30 03 00 01 61", "82 06 00 01 00 01 23 01", "10 80 80 80 80 00", "32 0E 00 09 72 70 6D 2F 70 31 2F 68 72 00 00 78",
		"30 10 00 09 72 70 6D 2F 70 31 2F 68 72 03 23 00 00 78", "82 0E 00 02 00 00 08 24 73 68 61 72 65 2F 67 00",
		"3C 0E 00 09 72 70 6D 2F 70 31 2F 68 72 00 01 78", "62 02 00 01", "A2 06 00 01 00 02 61 2F", "E0 00", "F0 00",
	}
	for _, s := range seeds {
		for _, v := range []byte{0, 4, 5} {
			f.Add(v, unhex(f, s))
		}
	}
	// Thousands of connections a second from one address: the per-address limits are not
	// what this target is about.
	s := startServer(f, broker.Config{ConnectTimeout: 500 * time.Millisecond, ConnectionRate: 1e6, ConnectionBurst: 1e6, MaxConnectionsPerAddress: 1e6})
	// A subscriber to everything, which reads all it gets: what a fuzzed client publishes
	// is routed to another connection, and written by the fuzzed client's reader
	// (conn.unlockFlushBy), whatever follows it.
	w, _ := ftDial(f, s.Addr, packet.Version5, "watch", func(p *packet.Connect) { p.KeepAlive = 0 })
	w.ftSub(packet.Version5, "#", 0)
	w.nc.SetReadDeadline(time.Time{})
	go io.Copy(io.Discard, w.nc) // ends when the connection closes
	f.Fuzz(func(t *testing.T, version byte, input []byte) {
		c := dialRaw(t, s.Addr)
		if v := version%3 + 3; v >= packet.Version311 && version != 0 {
			c.write(packet.AppendConnect(nil, &packet.Connect{Version: v, CleanStart: true, KeepAlive: 30, ClientID: "fz"}))
			if _, err := c.readPacket(2 * time.Second); err != nil {
				t.Fatalf("no CONNACK: %v", err)
			}
		}
		c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		c.nc.Write(input)
		c.nc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		io.Copy(io.Discard, c.nc)
		c.nc.Close()
		checkAlive(t, s.Addr)
	})
}
