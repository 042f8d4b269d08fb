package broker_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// TestReaderWritesForStalledSubscriber: a publisher's reader writes its deliveries to a
// subscriber itself (conn.unlockFlushBy), and never waits for that subscriber's socket:
// when the subscriber stops reading, what its socket does not take is left to a flusher
// (T76). The publisher is acknowledged and another subscriber served meanwhile; once the
// stalled subscriber reads again it gets whole packets in order, then a QoS 1 message
// published last (over TLS: no record cut, lost or reordered).
func TestReaderWritesForStalledSubscriber(t *testing.T) {
	overTCPAndTLS(t, func(t *testing.T, useTLS bool) {
		var left atomic.Int32
		broker.OnWriteLeft(t, func() { left.Add(1) })
		_, dial := dormantServer(t, useTLS)
		v := byte(packet.Version5)
		login := stalledLogin(t, dial)
		slow := login("slow", "w/#", 1)
		other := login("other", "probe", 0)
		pub := login("pub", "", 0)
		seq := fillStalled(t, pub, &left, 1)

		// The publisher is not held up by it: acknowledged, and heard by another subscriber.
		pub.ftPublish(v, &packet.Publish{QoS: 1, PacketID: 1, Topic: "probe", Payload: []byte("p")})
		pub.expectType(packet.PUBACK)
		if b := other.expectType(packet.PUBLISH); !bytes.HasSuffix(b, []byte("probe\x00p")) {
			t.Fatalf("the other subscriber got % x, want the probe", b)
		}

		pub.ftPublish(v, &packet.Publish{QoS: 1, PacketID: 2, Topic: "w/end", Payload: []byte("end")})
		pub.expectType(packet.PUBACK)
		got, last := 0, int64(-1)
		for {
			b, err := slow.readPacket(10 * time.Second)
			if err != nil {
				t.Fatalf("the stalled subscriber, reading again, after %d messages: %v", got, err)
			}
			var p packet.Publish
			if typ, flags, body := ftSplit(t, b); typ != packet.PUBLISH || packet.DecodePublish(&p, flags, body, v) != nil {
				t.Fatalf("the stalled subscriber, after %d messages, read % x", got, b[:min(len(b), 16)])
			}
			if p.Topic == "w/end" {
				break
			}
			n := int64(binary.BigEndian.Uint32(p.Payload))
			if p.Topic != "w/x" || n <= last || n >= int64(seq) || !bytes.Equal(p.Payload, stalledPayload(uint32(n))) {
				t.Fatalf("message %d: topic %q, seq %d after %d (of %d sent): not whole, or out of order", got, p.Topic, n, last, seq)
			}
			last = n
			got++
		}
		if got == 0 {
			t.Fatal("the stalled subscriber got none of the messages written before it stalled")
		}
		t.Logf("%d of %d messages reached the stalled subscriber; %d writes left a backlog", got, seq, left.Load())
	})
}

// stalledLogin returns a function that connects a 5.0 client over dial (clean start, keep
// alive 60) and subscribes it to filter at qos (none when filter is empty).
func stalledLogin(t *testing.T, dial func(func(net.Conn) net.Conn) *rawConn) func(id, filter string, qos byte) *rawConn {
	return func(id, filter string, qos byte) *rawConn {
		t.Helper()
		c := dial(nil)
		if ack := c.ftConnect(&packet.Connect{Version: packet.Version5, CleanStart: true, KeepAlive: 60, ClientID: id}); ack.Reason != packet.Success {
			t.Fatalf("CONNACK for %s: %#x", id, byte(ack.Reason))
		}
		if filter != "" {
			c.ftSub(packet.Version5, filter, qos)
		}
		return c
	}
}

// stalledPayload is message seq's 16 KiB payload: seq first, then bytes that depend on it.
func stalledPayload(seq uint32) []byte {
	b := make([]byte, 16<<10)
	for i := range b {
		b[i] = byte(seq) + byte(i*13)
	}
	return binary.BigEndian.AppendUint32(b[:0], seq)[:len(b)]
}

// fillStalled publishes 16 KiB messages at QoS 0 on w/x until writes for subscribers that
// read nothing left a backlog n times (left counts them: a socket's buffers are full,
// several MiB on loopback), and returns how many it published. Each is followed by a QoS 1
// publication on another topic, acknowledged once the message before it was routed: none
// follows the one whose write left the backlog.
func fillStalled(t *testing.T, pub *rawConn, left *atomic.Int32, n int32) uint32 {
	t.Helper()
	var seq uint32
	for ; left.Load() < n; seq++ {
		if seq == 8000 {
			t.Fatal("125 MiB to a subscriber that reads nothing left no backlog")
		}
		pub.ftPublish(packet.Version5, &packet.Publish{Topic: "w/x", Payload: stalledPayload(seq)})
		pub.ftPublish(packet.Version5, &packet.Publish{QoS: 1, PacketID: 9, Topic: "sync"})
		pub.expectType(packet.PUBACK)
	}
	return seq
}

// TestCloseWithBacklog: Close does not wait for the flushers that write a backlog to TLS
// subscribers that read nothing. (crypto/tls's Close would send its close_notify after
// such a write, which its own 5 s write deadline then ends: 15 s for these three.)
func TestCloseWithBacklog(t *testing.T) {
	var left atomic.Int32
	broker.OnWriteLeft(t, func() { left.Add(1) })
	s, dial := dormantServerCfg(t, true, broker.Config{WriteTimeout: time.Minute})
	login := stalledLogin(t, dial)
	for _, id := range []string{"slow1", "slow2", "slow3"} {
		login(id, "w/#", 0)
	}
	fillStalled(t, login("pub", "", 0), &left, 3)
	done := make(chan struct{})
	go func() {
		s.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for the writes to subscribers that read nothing")
	}
}

// TestReaderEndsWithClaimedWrites: a reader that claimed a subscriber's write
// (conn.unlockFlushBy) and then ends before it would have written it (a malformed packet
// right behind the publication, in the same read) hands the write to a flusher: the
// subscriber still gets the message.
func TestReaderEndsWithClaimedWrites(t *testing.T) {
	overTCPAndTLS(t, func(t *testing.T, useTLS bool) {
		_, dial := dormantServer(t, useTLS)
		v := byte(packet.Version5)
		sub := dial(nil)
		sub.ftConnect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: "sub"})
		sub.ftSub(v, "t", 0)
		pub := dial(nil)
		pub.ftConnect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: "pub"})
		b := packet.AppendPublish(nil, &packet.Publish{Topic: "t", Payload: []byte("last words")}, v)
		pub.write(append(b, 0x00, 0x00)) // packet type 0: malformed
		pub.expectClosed(5*time.Second, "e0 01 81", "e0 02 81 00")
		if got := sub.expectType(packet.PUBLISH); !bytes.HasSuffix(got, []byte("last words")) {
			t.Fatalf("the subscriber got % x", got)
		}
	})
}

// TestClaimedWritesBeforeWaitingForRest: a reader that claimed a subscriber's write writes
// it before it waits for the rest of a packet that is not all there, even when its last
// read filled its buffer (it cannot tell from that read that the client sent no more).
func TestClaimedWritesBeforeWaitingForRest(t *testing.T) {
	s := startServer(t, broker.Config{})
	v := byte(packet.Version5)
	sub, _ := ftDial(t, s.Addr, v, "sub", nil)
	sub.ftSub(v, "t", 0)
	pub, _ := ftDial(t, s.Addr, v, "pub", nil)
	// 4,096 bytes in one write, the size of the reader's buffer for TCP: a publication, then
	// the first bytes of a second one.
	first := packet.AppendPublish(nil, &packet.Publish{Topic: "t", Payload: bytes.Repeat([]byte("a"), 3990)}, v)
	second := packet.AppendPublish(nil, &packet.Publish{Topic: "t", Payload: bytes.Repeat([]byte("b"), 500)}, v)
	chunk := append(first, second...)[:4096]
	if len(first) >= len(chunk) {
		t.Fatalf("the first publication takes %d bytes of %d", len(first), len(chunk))
	}
	pub.write(chunk)
	if got := sub.expectType(packet.PUBLISH); !bytes.HasSuffix(got, []byte("aaaa")) {
		t.Fatalf("the subscriber got % x", got[:16])
	}
	pub.write(append(first, second...)[4096:])
	if got := sub.expectType(packet.PUBLISH); !bytes.HasSuffix(got, []byte("bbbb")) {
		t.Fatalf("the subscriber got % x", got[:16])
	}
}

// gatedConns hands out accepted connections wrapped, as a WebSocket listener's are (the
// broker has no sock for them), whose writes wait while the gate is closed.
type gatedConns struct {
	net.Listener
	gate chan struct{} // writes wait while it holds a token
}

type gatedConn struct {
	net.Conn
	gate chan struct{}
}

func (l gatedConns) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return gatedConn{c, l.gate}, nil
}

func (c gatedConn) Write(b []byte) (int, error) {
	c.gate <- struct{}{} // waits while the test holds the gate closed
	<-c.gate
	return c.Conn.Write(b)
}

// TestClaimedWritesBeforeOwnAcks: a reader that cannot probe its socket (WebSocket) writes
// the deliveries it claimed before its own client's acknowledgement, whose write may wait
// for that client: here it waits until the end of the test, and the subscriber still gets
// the message.
func TestClaimedWritesBeforeOwnAcks(t *testing.T) {
	s := startServer(t, broker.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{}, 1)
	go s.Serve(gatedConns{ln, gate}, broker.ListenerOptions{Name: "gated", AllowAnonymous: true}) // ends with the server
	v := byte(packet.Version5)
	sub, _ := ftDial(t, s.Addr, v, "sub", nil)
	sub.ftSub(v, "t", 0)
	pub, _ := ftDial(t, ln.Addr().String(), v, "pub", nil)

	gate <- struct{}{} // the broker's writes to pub wait from here
	t.Cleanup(func() { <-gate })
	pub.ftPublish(v, &packet.Publish{QoS: 1, PacketID: 1, Topic: "t", Payload: []byte("x")})
	if got, want := sub.expectType(packet.PUBLISH), packet.AppendPublish(nil, &packet.Publish{Topic: "t", Payload: []byte("x")}, v); !bytes.Equal(got, want) {
		t.Fatalf("the subscriber got % x, want % x", got, want)
	}
}
