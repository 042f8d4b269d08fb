package loadgen

import (
	"bufio"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"vitalmq/internal/packet"
)

// discardConn is a net.Conn whose writes go nowhere (only Write is used).
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// loopReader replays the same bytes forever.
type loopReader struct {
	b   []byte
	off int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	return n, nil
}

// BenchmarkPublisherEncode is the publisher's per-message work: packet identifier, stamp,
// AppendPublish into the reused buffer and one write per batch; an op is one message.
func BenchmarkPublisherEncode(b *testing.B) {
	for _, qos := range []byte{0, 1, 2} {
		b.Run("qos"+string(rune('0'+qos)), func(b *testing.B) {
			p := &publisher{c: &client{version: packet.Version311, nc: discardConn{}, wbuf: make([]byte, 0, 4096)},
				pub: packet.Publish{QoS: qos, Topic: "bench/17", Payload: make([]byte, 64)}, idx: 17}
			if qos > 0 {
				p.inuse = new([1024]atomic.Uint64)
				p.inuse[0].Store(1)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := p.send(1, -1, 0, 1<<62); err != nil {
					b.Fatal(err)
				}
				if qos > 0 {
					p.release(p.nextID) // as the acknowledgement would
				}
			}
		})
	}
}

// BenchmarkSubscriberDecode is the subscriber's per-message work: read the packet through
// the bufio.Reader, parse the PUBLISH by hand, check the sequence, record the latency and
// queue the acknowledgement (flushed in batches); an op is one message.
func BenchmarkSubscriberDecode(b *testing.B) {
	for _, c := range []struct {
		name string
		qos  byte
		v    byte
	}{{"qos0", 0, packet.Version311}, {"qos1", 1, packet.Version311}, {"qos2-mqtt5", 2, packet.Version5}} {
		b.Run(c.name, func(b *testing.B) {
			payload := make([]byte, 64)
			var stream []byte
			for i := range 1000 {
				stamp(payload, time.Now().UnixNano(), 9, i%10, uint64(i/10))
				p := packet.Publish{QoS: c.qos, Topic: "bench/7", Payload: payload}
				if c.qos > 0 {
					p.PacketID = uint16(i + 1)
				}
				stream = packet.AppendPublish(stream, &p, c.v)
			}
			cl := &client{r: bufio.NewReaderSize(&loopReader{b: stream}, 64<<10), nc: discardConn{}, version: c.v,
				wbuf: make([]byte, 0, 32<<10)}
			s := &subscriber{c: cl, tag: 9, next: make([]uint64, 10), got: make([]uint64, 10), ws: 0, we: 1 << 62}
			v5 := c.v == packet.Version5
			b.ReportAllocs()
			for b.Loop() {
				if len(cl.wbuf) > 16<<10 || !cl.packetBuffered() {
					cl.flush()
				}
				h, body, err := cl.next()
				if err != nil || h.Type != packet.PUBLISH {
					b.Fatal(h, err)
				}
				s.onPublish(h.Flags, body, v5, time.Now().UnixNano())
			}
			if s.foreign != 0 {
				b.Fatalf("%d foreign", s.foreign)
			}
		})
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	v := int64(12345)
	b.ReportAllocs()
	for b.Loop() {
		h.Record(v)
		v = v*1103515245 + 12345&(1<<30-1)
		if v < 0 {
			v = -v
		}
	}
}
