package broker_test

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
	"vitalmq/internal/state"
)

// Issue 4's benchmark: acknowledged QoS 1 publications per second with durable
// acknowledgements (Pebble, fsync, group commit) and in memory. durBenchPubs publishers on
// loopback, each with durBenchWindow publications in flight, publish to one persistent
// QoS 1 subscriber that acknowledges everything.
//
//	go test -run '^$' -bench 'QoS1(Durable|Memory)' -benchtime 20000x ./internal/broker
func BenchmarkQoS1Durable(b *testing.B) { durBenchQoS1(b, true, 0) }

// BenchmarkQoS1DurableNoInterval syncs without storage.sync_interval's wait (-1s): with
// few publications in flight, each waiting for its acknowledgement, the interval costs
// throughput (docs/PERFORMANCE.md).
func BenchmarkQoS1DurableNoInterval(b *testing.B) { durBenchQoS1(b, true, -1) }

func BenchmarkQoS1Memory(b *testing.B) { durBenchQoS1(b, false, 0) }

const (
	durBenchPubs   = 8
	durBenchWindow = 16
)

// durBenchQoS1 runs the benchmark in memory or durable, with syncInterval as
// state.Config.SyncInterval (0: the default).
func durBenchQoS1(b *testing.B, durable bool, syncInterval time.Duration) {
	cfg := broker.Config{MaxQueuedMessages: 1 << 20, MaxQueuedBytes: 1 << 30, PublishRate: -1, PublishByteRate: -1}
	if durable {
		db, err := state.Open(b.TempDir(), state.Config{SyncInterval: syncInterval})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		cfg.Persister = db
	}
	srv := durStart(b, cfg)
	defer srv.stop(b)

	sub, _ := durDial(b, srv.addr, durV5, "bench-sub", true, 3600)
	sub.durSubscribe(durV5, "bench/#", 1)
	sub.nc.SetDeadline(time.Time{}) // durDial's deadlines are for tests; a long benchmark outlives them
	var subWG sync.WaitGroup
	subWG.Go(func() { durBenchAcker(sub.nc) })

	conns := make([]net.Conn, durBenchPubs)
	for i := range conns {
		c, _ := durDial(b, srv.addr, durV5, "bench-pub-"+string(rune('a'+i)), true, 0)
		c.nc.SetDeadline(time.Time{})
		conns[i] = c.nc
	}
	payload := make([]byte, 64)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 2*durBenchPubs)
	for i, nc := range conns {
		n := b.N / durBenchPubs
		if i < b.N%durBenchPubs {
			n++
		}
		sem := make(chan struct{}, durBenchWindow)
		wg.Go(func() { // acknowledgements
			br := bufio.NewReader(nc)
			for range n {
				h, err := packet.ReadHeader(br)
				if err == nil {
					_, err = br.Discard(h.Remaining)
				}
				if err == nil && h.Type != packet.PUBACK {
					err = io.ErrUnexpectedEOF
				}
				if err != nil {
					errs <- err
					return
				}
				<-sem
			}
		})
		wg.Go(func() { // publications
			topic := "bench/" + string(rune('a'+i))
			var buf []byte
			for j := range n {
				sem <- struct{}{}
				buf = packet.AppendPublish(buf[:0], &packet.Publish{QoS: 1, PacketID: uint16(j%60000 + 1), Topic: topic, Payload: payload}, durV5)
				if _, err := nc.Write(buf); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	for _, nc := range conns {
		nc.Close()
	}
	sub.nc.Close()
	subWG.Wait()
}

// durBenchAcker answers every QoS 1 PUBLISH with PUBACK until the connection closes.
func durBenchAcker(nc net.Conn) {
	br := bufio.NewReader(nc)
	bw := bufio.NewWriter(nc)
	for {
		h, err := packet.ReadHeader(br)
		if err != nil {
			return
		}
		body := make([]byte, h.Remaining)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		if h.Type == packet.PUBLISH && h.Flags&0x06 == 2 {
			n := int(body[0])<<8 | int(body[1])
			id := uint16(body[2+n])<<8 | uint16(body[3+n])
			bw.Write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBACK, PacketID: id}, durV5))
		}
		if br.Buffered() == 0 && bw.Flush() != nil {
			return
		}
	}
}
