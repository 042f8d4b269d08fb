package broker_test

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
	"vitalmq/internal/session"
)

// fcPublisher connects a 5.0 publisher and sends n QoS 1 messages on its own topic without
// waiting, reading the PUBACKs in parallel; it returns when all n are acknowledged.
func fcPublisher(t *testing.T, addr, id string, n int, quotaOK bool) error {
	c, _ := ftDial(t, addr, packet.Version5, id, func(p *packet.Connect) { p.KeepAlive = 120 })
	acked := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			b, err := c.readPacket(30 * time.Second)
			if err != nil {
				acked <- fmt.Errorf("%s: PUBACK %d of %d: %w", id, i+1, n, err)
				return
			}
			if packet.Type(b[0]>>4) != packet.PUBACK || len(b) > 4 && b[4] != 0 && !(quotaOK && b[4] == byte(packet.QuotaExceeded)) {
				acked <- fmt.Errorf("%s: got % x, want PUBACK success", id, b)
				return
			}
		}
		acked <- nil
	}()
	var buf []byte
	for i := range n {
		payload := binary.BigEndian.AppendUint32(nil, uint32(i))
		buf = packet.AppendPublish(buf[:0], &packet.Publish{QoS: 1, PacketID: uint16(i%60000 + 1), Topic: "fc/" + id, Payload: payload}, packet.Version5)
		c.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.nc.Write(buf); err != nil {
			return err
		}
	}
	return <-acked
}

// fcSubscriber subscribes at QoS 1 to fc/# and acknowledges everything it receives, counting
// messages per publisher, until stop is closed.
func fcSubscriber(t *testing.T, addr string) (counts func() map[string]int, stop func()) {
	c, _ := ftDial(t, addr, packet.Version5, "fc-sub", func(p *packet.Connect) { p.KeepAlive = 120 })
	c.ftSub(packet.Version5, "fc/#", 1)
	var mu sync.Mutex
	got := map[string]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ack []byte
		for {
			b, err := c.readPacket(30 * time.Second)
			if err != nil {
				return
			}
			var p packet.Publish
			if err := packet.DecodePublish(&p, b[0]&0x0f, b[2:], packet.Version5); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got[p.Topic]++
			mu.Unlock()
			ack = packet.AppendAck(ack[:0], &packet.Ack{Type: packet.PUBACK, PacketID: p.PacketID}, packet.Version5)
			if _, err := c.nc.Write(ack); err != nil {
				return
			}
		}
	}()
	return func() map[string]int {
			mu.Lock()
			defer mu.Unlock()
			m := map[string]int{}
			for k, v := range got {
				m[k] = v
			}
			return m
		}, func() {
			c.nc.Close()
			<-done
		}
}

// QoS 1 fan-in faster than the subscriber takes it: publishers are slowed down (not read
// from) while the subscriber's queue is over half full, so nothing is dropped at a full
// queue: every acknowledged message is delivered (issue 5, scenario 2: lossless).
func TestFlowControlFanInLossless(t *testing.T) {
	s := startServer(t, broker.Config{MaxQueuedMessages: 100, MaxInflight: 8, FlowControlWait: 10 * time.Second,
		PublishRate: -1, PublishByteRate: -1, ConnectionRate: 1e6, ConnectionBurst: 1e6})
	fcFanIn(t, s, 20, 500, 2*time.Minute)
}

// Many publishers held for one queue to drain (more than drainersAtOnce) are all resumed
// when it drains, a few at a time, each resuming the next: none waits out its
// FlowControlWait, and nothing is lost.
func TestFlowControlManyHeldResumed(t *testing.T) {
	const wait = 30 * time.Second
	s := startServer(t, broker.Config{MaxQueuedMessages: 80, MaxInflight: 1, FlowControlWait: wait, FlowControlReaders: -1, MaxConnectionsPerAddress: 1000,
		PublishRate: -1, PublishByteRate: -1, ConnectionRate: 1e6, ConnectionBurst: 1e6})
	fcFanIn(t, s, 100, 3, wait*2/3)
}

// fcFanIn runs pubs publishers of each QoS 1 messages (fcPublisher) into one subscriber
// (fcSubscriber) on s. It fails unless they are all acknowledged within the given time
// (a publisher held past it was not resumed when the queue drained), then delivered, with
// nothing dropped.
func fcFanIn(t *testing.T, s *testServer, pubs, each int, within time.Duration) {
	t.Helper()
	counts, stop := fcSubscriber(t, s.Addr)
	defer stop()
	var wg sync.WaitGroup
	for i := range pubs {
		wg.Go(func() {
			if err := fcPublisher(t, s.Addr, fmt.Sprintf("p%d", i), each, false); err != nil {
				t.Error(err)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(within):
		t.Errorf("publishers still waiting after %v (%d held)", within, s.Held())
		<-done // their reads time out
		return
	}
	eventually(t, 20*time.Second, "every acknowledged message to be delivered", func() bool {
		n := 0
		for _, v := range counts() {
			n += v
		}
		return n == pubs*each
	})
	if d := s.Stats().Dropped; d != 0 {
		t.Fatalf("%d messages dropped, want 0", d)
	}
}

// More devices than the subscriber's queue holds each send one message at once (issue 5,
// scenario 6: 10,000 devices, a 1,000-message queue): pausing a publisher after its message
// cannot help, so a publication that finds a connected, acknowledging subscriber's queue
// full waits for room before it is acknowledged, instead of being dropped. Past
// FlowControlReaders publishers waiting on their goroutine, one waiting costs none
// (conn.hold); with KeepReaders, all wait on theirs.
func TestFlowControlFullQueueWaits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		readers int // publishers waiting on their goroutine; -1: as many as wait
		cfg     broker.Config
	}{
		{"held", 0, broker.Config{FlowControlReaders: -1}},
		{"2 readers", 2, broker.Config{FlowControlReaders: 2}},
		{"KeepReaders", -1, broker.Config{KeepReaders: true}},
	} {
		t.Run(tc.name, func(t *testing.T) { testFullQueueWaits(t, tc.cfg, tc.readers) })
	}
}

func testFullQueueWaits(t *testing.T, cfg broker.Config, readers int) {
	cfg.MaxQueuedMessages, cfg.MaxInflight, cfg.FlowControlWait = 4, 4, 30*time.Second
	cfg.PublishRate, cfg.PublishByteRate, cfg.ConnectionRate, cfg.ConnectionBurst = -1, -1, 1e6, 1e6
	s := startServer(t, cfg)
	sub, _ := ftDial(t, s.Addr, packet.Version5, "fc-sub", func(p *packet.Connect) { p.KeepAlive = 120 })
	sub.ftSub(packet.Version5, "fc/#", 1)
	read := func() *packet.Publish {
		t.Helper()
		b, err := sub.readPacket(10 * time.Second)
		if err != nil {
			t.Fatalf("subscriber: %v", err)
		}
		var p packet.Publish
		if err := packet.DecodePublish(&p, b[0]&0x0f, b[2:], packet.Version5); err != nil {
			t.Fatal(err)
		}
		return &p
	}
	ack := func(p *packet.Publish) {
		sub.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBACK, PacketID: p.PacketID}, packet.Version5))
	}
	// One acknowledged delivery first: the subscriber is connected and acknowledging.
	if err := fcPublisher(t, s.Addr, "warm", 1, false); err != nil {
		t.Fatal(err)
	}
	ack(read())

	const devices = 12 // three times the queue
	errs := make(chan error, devices)
	for i := range devices {
		go func() { errs <- fcPublisher(t, s.Addr, fmt.Sprintf("d%d", i), 1, false) }()
	}
	// The queue fills (4 in flight, unacknowledged) while all 12 publications arrive.
	held := []*packet.Publish{read(), read(), read(), read()}
	eventually(t, 10*time.Second, "every publication to reach the broker", func() bool {
		return s.Stats().Received == devices+1
	})
	// Those waiting for room (4 messages in flight, 4 queued) and those paused after their
	// message (the queue more than half full) wait: on their reader goroutine, up to
	// readers, or held.
	if readers < 0 {
		eventually(t, 10*time.Second, "the waiting publishers to keep their goroutines", func() bool {
			return readLoops() >= devices-8
		})
		if n := s.Held(); n != 0 {
			t.Fatalf("%d publishers held without a goroutine", n)
		}
	} else {
		eventually(t, 10*time.Second, fmt.Sprintf("%d waiting publishers to keep their goroutines, the others none", readers), func() bool {
			n := readLoops()
			return n == readers && s.Held()+n >= devices-8 && s.Held() > 0
		})
		if n := s.HeldReadBuffers(); n != 0 {
			t.Fatalf("%d held publishers keep their read buffer", n)
		}
	}
	for _, p := range held {
		ack(p)
	}
	for got := len(held); got < devices; got++ {
		ack(read())
	}
	for range devices {
		if err := <-errs; err != nil {
			t.Error(err) // a PUBACK 0x97: the publication was dropped at the full queue
		}
	}
	if d := s.Stats().Dropped; d != 0 {
		t.Fatalf("%d messages dropped, want 0", d)
	}
	eventually(t, 10*time.Second, "no publisher held after", func() bool { return s.Held() == 0 })
}

// pubQoS1 publishes one QoS 1 message from c and returns the PUBACK's reason and how long
// it took.
func pubQoS1(t *testing.T, c *rawConn, id uint16, topic string) (packet.ReasonCode, time.Duration) {
	t.Helper()
	start := time.Now()
	c.write(packet.AppendPublish(nil, &packet.Publish{QoS: 1, PacketID: id, Topic: topic, Payload: []byte{byte(id)}}, packet.Version5))
	for {
		b, err := c.readPacket(20 * time.Second)
		if err != nil {
			t.Fatalf("publication %d: %v", id, err)
		}
		if packet.Type(b[0]>>4) != packet.PUBACK {
			continue // a delivery to a client that also subscribes
		}
		if len(b) > 4 {
			return packet.ReasonCode(b[4]), time.Since(start)
		}
		return packet.Success, time.Since(start)
	}
}

// fcFullQueue connects a subscriber (fc/#) and two publishers to s, which has a queue of 2
// and 2 in flight: fc-a publishes one message, which the subscriber acknowledges (so it
// counts as acknowledging), then 4 more, which it does not: its queue is full, and fc-a
// paused by flow control. It returns the subscriber and both publishers.
func fcFullQueue(t *testing.T, s *testServer) (sub, a, b *rawConn) {
	t.Helper()
	sub, _ = ftDial(t, s.Addr, packet.Version5, "fc-sub", func(p *packet.Connect) { p.KeepAlive = 120 })
	sub.ftSub(packet.Version5, "fc/#", 1)
	a, _ = ftDial(t, s.Addr, packet.Version5, "fc-a", nil)
	b, _ = ftDial(t, s.Addr, packet.Version5, "fc-b", nil)
	pubQoS1(t, a, 1, "fc/a")
	p := sub.ftReadPublish(packet.Version5)
	sub.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBACK, PacketID: p.PacketID}, packet.Version5))
	eventually(t, 5*time.Second, "the acknowledgement to be handled", func() bool { return s.Stats().Sent == 1 })
	for id := uint16(2); id <= 5; id++ { // 2 in flight, 2 queued: full
		if rc, _ := pubQoS1(t, a, id, "fc/a"); rc != packet.Success {
			t.Fatalf("publication %d: reason %#x", id, byte(rc))
		}
	}
	return sub, a, b
}

// A publication waits for room at most FlowControlWait: a subscriber that acknowledged
// recently but stopped costs the publisher that long, then the message is refused (0x97).
func TestFlowControlRoomWaitBounded(t *testing.T) {
	const wait = 2 * time.Second // also how recent the subscriber's last acknowledgement must be
	s := startServer(t, broker.Config{MaxQueuedMessages: 2, MaxInflight: 2, FlowControlWait: wait,
		PublishRate: -1, PublishByteRate: -1})
	_, _, b := fcFullQueue(t, s)
	// Another publisher (a is paused by flow control now) finds the queue full and waits.
	rc, took := pubQoS1(t, b, 1, "fc/b")
	if rc != packet.QuotaExceeded || took < wait {
		t.Fatalf("publication into a full queue: reason %#x after %v, want 0x97 after waiting %v", byte(rc), took, wait)
	}
	if d := s.Stats().Dropped; d != 1 {
		t.Fatalf("%d dropped, want 1", d)
	}
}

// A publisher held while it waits for room, and one held after its message (the queue past
// half), end when their connections are closed (here by Kick, then by Shutdown), not when
// their minute of waiting runs out.
func TestFlowControlHeldPublishersClosed(t *testing.T) {
	s := startServer(t, broker.Config{MaxQueuedMessages: 2, MaxInflight: 2, FlowControlWait: time.Minute,
		FlowControlReaders: -1, PublishRate: -1, PublishByteRate: -1})
	_, _, b := fcFullQueue(t, s) // fc-a is held after its last publication
	b.write(packet.AppendPublish(nil, &packet.Publish{QoS: 1, PacketID: 1, Topic: "fc/b", Payload: []byte{1}}, packet.Version5))
	eventually(t, 5*time.Second, "both publishers to be held", func() bool { return s.Held() == 2 && readLoops() == 0 })
	if !s.Kick("fc-b", packet.AdministrativeAction, false) {
		t.Fatal("fc-b has no session")
	}
	b.expectClosed(10*time.Second, "e0 01 98")
	eventually(t, 5*time.Second, "the kicked publisher's connection to end", func() bool {
		return s.Held() == 1 && s.Stats().Connected == 2
	})
	// a is still held: Shutdown (at the end of the test, within 5 s) ends it.
}

// A publication held while it waits for room is handled again after, but its Message
// Expiry Interval still counts from its arrival [MQTT-3.3.2-5]: one that expired while it
// waited is not delivered.
func TestFlowControlHeldPublicationExpires(t *testing.T) {
	s := startServer(t, broker.Config{MaxQueuedMessages: 2, MaxInflight: 2, FlowControlWait: 30 * time.Second,
		FlowControlReaders: -1, PublishRate: -1, PublishByteRate: -1})
	sub, _, b := fcFullQueue(t, s)
	p := &packet.Publish{QoS: 1, PacketID: 1, Topic: "fc/b", Payload: []byte("expires")}
	p.Props.MessageExpiry = 1
	p.Props.Set(packet.PropMessageExpiry)
	b.write(packet.AppendPublish(nil, p, packet.Version5))
	eventually(t, 5*time.Second, "fc-b to be held", func() bool { return s.Held() == 2 })
	time.Sleep(1100 * time.Millisecond) // fc-b's message expires while it waits
	for range 4 {
		m := sub.ftReadPublish(packet.Version5)
		if m.Topic != "fc/a" {
			t.Fatalf("delivered %q (expiry %d s) after it expired", m.Topic, m.Props.MessageExpiry)
		}
		sub.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBACK, PacketID: m.PacketID}, packet.Version5))
	}
	b.expectType(packet.PUBACK) // taken (then expired in the queue), not refused
	sub.expectSilence(300 * time.Millisecond)
}

// Two clients that publish to each other's full queues while both subscribe: a publisher
// waiting for room cannot read its own acknowledgements, so nobody waits for its queue
// (otherwise each waits for the other until FlowControlWait runs out).
func TestFlowControlNoMutualWait(t *testing.T) {
	const wait = 10 * time.Second
	s := startServer(t, broker.Config{MaxQueuedMessages: 1, MaxInflight: 1, FlowControlWait: wait,
		PublishRate: -1, PublishByteRate: -1})
	p, _ := ftDial(t, s.Addr, packet.Version5, "fc-p", nil)
	q, _ := ftDial(t, s.Addr, packet.Version5, "fc-q", nil)
	r, _ := ftDial(t, s.Addr, packet.Version5, "fc-r", nil)
	p.ftSub(packet.Version5, "c/#", 1)
	q.ftSub(packet.Version5, "c/#", 1)
	// Both acknowledge a first message (so both count as acknowledging), then read nothing
	// while two more arrive: one in flight and one queued each (full).
	pubQoS1(t, r, 1, "c/1")
	for _, c := range []*rawConn{p, q} {
		m := c.ftReadPublish(packet.Version5)
		c.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBACK, PacketID: m.PacketID}, packet.Version5))
	}
	eventually(t, 5*time.Second, "both acknowledgements to be handled", func() bool { return s.Stats().Sent == 2 })
	pubQoS1(t, r, 2, "c/2")
	pubQoS1(t, r, 3, "c/3")
	// Now each publishes (into the other's full queue) and acknowledges what it receives.
	type result struct {
		took time.Duration
		err  error
	}
	done := make(chan result, 2)
	for _, c := range []*rawConn{p, q} {
		go func() {
			start := time.Now()
			c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.nc.Write(packet.AppendPublish(nil, &packet.Publish{QoS: 1, PacketID: 9, Topic: "c/x", Payload: []byte("x")}, packet.Version5))
			for {
				b, err := c.readPacket(20 * time.Second)
				if err != nil {
					done <- result{err: err}
					return
				}
				switch packet.Type(b[0] >> 4) {
				case packet.PUBACK:
					done <- result{took: time.Since(start)}
					return
				case packet.PUBLISH:
					var m packet.Publish
					if err := packet.DecodePublish(&m, b[0]&0x0f, b[2:], packet.Version5); err != nil {
						done <- result{err: err}
						return
					}
					c.nc.Write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBACK, PacketID: m.PacketID}, packet.Version5))
				}
			}
		}()
	}
	for range 2 {
		res := <-done
		if res.err != nil {
			t.Fatal(res.err)
		}
		if res.took > wait/2 {
			t.Fatalf("a publication took %v: the two publishers waited for each other", res.took)
		}
	}
}

// The reader writes its own client's acknowledgements before it waits for more input, also
// when what it read ends in the middle of the next packet.
func TestAckBeforePartialPacket(t *testing.T) {
	s := startServer(t, broker.Config{})
	c, _ := ftDial(t, s.Addr, packet.Version5, "da-pub", nil)
	p1 := packet.AppendPublish(nil, &packet.Publish{QoS: 1, PacketID: 1, Topic: "da/x", Payload: []byte("x")}, packet.Version5)
	p2 := packet.AppendPublish(nil, &packet.Publish{QoS: 1, PacketID: 2, Topic: "da/x", Payload: []byte("y")}, packet.Version5)
	c.write(append(p1, p2[:3]...)) // P1 whole and the start of P2 in one write
	b, err := c.readPacket(5 * time.Second)
	if err != nil || packet.Type(b[0]>>4) != packet.PUBACK {
		t.Fatalf("no PUBACK for 1 while the broker waits for the rest of 2: % x, %v", b, err)
	}
	c.write(p2[3:])
	if b, err := c.readPacket(5 * time.Second); err != nil || packet.Type(b[0]>>4) != packet.PUBACK {
		t.Fatalf("PUBACK for 2: % x, %v", b, err)
	}
}

// A subscriber that stops reading does not stall publishers for long: once its first
// unacknowledged delivery is FlowControlWait old, nobody waits for it; its full queue drops
// (counted), per policy (T76).
func TestFlowControlStalledSubscriber(t *testing.T) {
	s := startServer(t, broker.Config{MaxQueuedMessages: 50, MaxInflight: 8, FlowControlWait: 200 * time.Millisecond,
		PublishRate: -1, PublishByteRate: -1})
	stalled, _ := ftDial(t, s.Addr, packet.Version5, "fc-stalled", nil)
	stalled.ftSub(packet.Version5, "fc/#", 1) // and never reads again
	start := time.Now()
	if err := fcPublisher(t, s.Addr, "p-stall", 400, true); err != nil { // 0x97 once the queue is full
		t.Fatal(err)
	}
	// Waiting FlowControlWait for each of the ~350 messages past half the queue would take
	// over a minute; without waiting for a stalled subscriber it is well under the bound.
	if el := time.Since(start); el > 20*time.Second {
		t.Fatalf("400 publications took %v: the publisher waited for a stalled subscriber", el)
	}
	if s.Stats().Dropped == 0 {
		t.Fatal("nothing dropped for a stalled subscriber with a full queue")
	}
}

// A subscriber that had nothing to acknowledge for longer than FlowControlWait is not
// stalled. A burst after a quiet spell fills its queue before its first acknowledgement can
// arrive (with a persister, before its first delivery is even sent): the publisher waits for
// it, and nothing is dropped (issue 5, scenario 6: 10,000 devices began publishing seconds
// after the dashboard subscribed, and 347 acknowledged messages were dropped at its full
// queue).
func TestFlowControlQuietSubscriberWaitedFor(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "durable"}[durable], func(t *testing.T) {
			t.Parallel()
			cfg := broker.Config{MaxQueuedMessages: 4, MaxInflight: 2, FlowControlWait: 3 * time.Second,
				PublishRate: -1, PublishByteRate: -1}
			var g *gatedPersister
			if durable {
				// Commits are held from the burst until the publisher waits: the queue fills
				// with messages waiting for their commit, none sent yet.
				g = &gatedPersister{Persister: durOpen(t, t.TempDir())}
				cfg.Persister = g
			}
			testQuietSubscriber(t, cfg, g)
		})
	}
}

// gatedPersister holds commits, in order, between hold and release.
type gatedPersister struct {
	broker.Persister
	mu   sync.Mutex
	held []func()
	shut bool
}

func (g *gatedPersister) Commit(cs *session.ChangeSet, done func(error)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		g.held = append(g.held, func() { g.Persister.Commit(cs, done) })
		return
	}
	g.Persister.Commit(cs, done) // does not block on I/O (Persister)
}

func (g *gatedPersister) hold() {
	g.mu.Lock()
	g.shut = true
	g.mu.Unlock()
}

func (g *gatedPersister) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.shut = false
	for _, f := range g.held { // under the lock: no later commit overtakes these
		f()
	}
	g.held = nil
}

func testQuietSubscriber(t *testing.T, cfg broker.Config, g *gatedPersister) {
	s := startServer(t, cfg)
	if g != nil {
		t.Cleanup(g.release) // before the server's shutdown (cleanups run last first): no commit left held
	}
	sub, _ := ftDial(t, s.Addr, packet.Version5, "fc-quiet", func(p *packet.Connect) {
		p.KeepAlive = 120
		p.Props.SessionExpiry = 300 // persistent: with a persister, its messages are stored first
		p.Props.Set(packet.PropSessionExpiry)
	})
	sub.ftSub(packet.Version5, "fc/#", 1)
	// Not a wait for an event: the precondition is time itself, longer than FlowControlWait
	// with nothing to acknowledge (longer only makes it more so).
	time.Sleep(cfg.FlowControlWait + cfg.FlowControlWait/5)
	if g != nil {
		g.hold()
	}

	const n = 12 // twice the window and queue
	errs := make(chan error, 1)
	go func() { errs <- fcPublisher(t, s.Addr, "p-quiet", n, false) }()
	// The subscriber reads nothing until the publisher waits for it (or a message was
	// dropped); then it has FlowControlWait to acknowledge its first delivery.
	eventually(t, 10*time.Second, "the publisher to wait, or a drop", func() bool {
		return s.Waiting()+s.Held() > 0 || s.Stats().Dropped > 0
	})
	if g != nil {
		g.release()
	}
	if d := s.Stats().Dropped; d > 0 {
		t.Fatalf("%d messages dropped: a subscriber with nothing in flight counted as stalled", d)
	}
	for i := range n {
		b, err := sub.readPacket(10 * time.Second)
		if err != nil {
			t.Fatalf("delivery %d of %d: %v", i+1, n, err)
		}
		var p packet.Publish
		if err := packet.DecodePublish(&p, b[0]&0x0f, b[2:], packet.Version5); err != nil {
			t.Fatal(err)
		}
		if got := binary.BigEndian.Uint32(p.Payload); got != uint32(i) {
			t.Fatalf("delivery %d is message %d", i, got)
		}
		sub.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBACK, PacketID: p.PacketID}, packet.Version5))
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if d := s.Stats().Dropped; d > 0 {
		t.Fatalf("%d messages dropped", d)
	}
}

// An idle connection costs one goroutine (its reader): the writer runs only while there is
// something to write, and no write buffer is kept meanwhile (issue 5: idle connection memory).
func TestIdleConnectionHasNoWriter(t *testing.T) {
	s := startServer(t, broker.Config{ConnectionRate: 1e6, ConnectionBurst: 1e6})
	base := runtime.NumGoroutine()
	const n = 50
	var conns []*rawConn
	for i := range n {
		c, _ := ftDial(t, s.Addr, packet.Version5, fmt.Sprintf("idle-%d", i), nil)
		conns = append(conns, c)
	}
	eventually(t, 5*time.Second, "one goroutine per idle connection", func() bool {
		return runtime.NumGoroutine()-base <= n+5
	})
	// They still work: a message reaches one of them, and it can be kicked.
	conns[0].ftSub(packet.Version5, "idle/t", 0)
	conns[1].ftPublish(packet.Version5, &packet.Publish{Topic: "idle/t", Payload: []byte("x")})
	if p := conns[0].ftReadPublish(packet.Version5); string(p.Payload) != "x" {
		t.Fatalf("got %q", p.Payload)
	}
}
