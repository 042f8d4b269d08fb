package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"vitalmq/internal/packet"
)

// The raw MQTT 5.0 clients of the crash and takeover tests. They keep their session
// state (packet identifiers in flight, QoS 2 identifiers awaiting PUBREL, what was
// acknowledged and delivered) in the test process, across connections: only the broker
// is killed, never the clients.

// mconn is one MQTT 5.0 connection.
type mconn struct {
	nc  net.Conn
	br  *bufio.Reader
	wmu sync.Mutex
}

// dialMQTT connects and completes CONNECT (clean start as given, Session Expiry 3600).
func dialMQTT(addr, clientID string, cleanStart bool) (*mconn, packet.Connack, error) {
	var ack packet.Connack
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, ack, err
	}
	c := &mconn{nc: nc, br: bufio.NewReader(nc)}
	p := packet.Connect{Version: packet.Version5, CleanStart: cleanStart, KeepAlive: 60, ClientID: clientID}
	p.Props.SessionExpiry = 3600
	p.Props.Set(packet.PropSessionExpiry)
	if err := c.write(packet.AppendConnect(nil, &p)); err != nil {
		nc.Close()
		return nil, ack, err
	}
	h, body, err := c.read(5 * time.Second)
	if err == nil && h.Type != packet.CONNACK {
		err = fmt.Errorf("got %v, want CONNACK", h.Type)
	}
	if err == nil {
		err = packet.DecodeConnack(&ack, body, packet.Version5)
	}
	if err == nil && ack.Reason != packet.Success {
		err = fmt.Errorf("CONNACK reason %#x", byte(ack.Reason))
	}
	if err != nil {
		nc.Close()
		return nil, ack, err
	}
	nc.SetReadDeadline(time.Time{})
	return c, ack, nil
}

func (c *mconn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.nc.Write(b)
	if err != nil {
		c.nc.Close()
	}
	return err
}

func (c *mconn) ack(t packet.Type, id uint16) error {
	return c.write(packet.AppendAck(nil, &packet.Ack{Type: t, PacketID: id}, packet.Version5))
}

// read reads one packet; timeout 0 means no deadline.
func (c *mconn) read(timeout time.Duration) (packet.FixedHeader, []byte, error) {
	if timeout > 0 {
		c.nc.SetReadDeadline(time.Now().Add(timeout))
	}
	h, err := packet.ReadHeader(c.br)
	if err != nil {
		return h, nil, err
	}
	body := make([]byte, h.Remaining)
	_, err = io.ReadFull(c.br, body)
	return h, body, err
}

func (c *mconn) close() { c.nc.Close() }

// durSub is a persistent QoS 2 subscriber on crash/#, the receiver side of exactly-once
// by Method B (§4.3.3): a QoS 2 message goes to the application when its packet
// identifier is first received; a PUBLISH whose identifier still awaits PUBREL is a
// duplicate and is not delivered again; PUBREL frees the identifier.
type durSub struct {
	id, filter string

	mu          sync.Mutex
	awaitRel    map[uint16]string // packet id → payload, awaiting PUBREL
	got         map[string]int    // payload → deliveries to the application
	dupReceipts int               // PUBLISH with an identifier awaiting PUBREL (not delivered)
	conns       int               // successful connections
	lostSession int               // reconnections answered with Session Present 0
	protoErrs   []string
	cur         *mconn
}

func newDurSub(id, filter string) *durSub {
	return &durSub{id: id, filter: filter, awaitRel: map[uint16]string{}, got: map[string]int{}}
}

// connect opens a new connection (while an old one may still be open: a takeover),
// subscribes on the first one, and serves it on a new goroutine until it ends; done is
// closed then.
func (s *durSub) connect(addr string) (done chan struct{}, err error) {
	s.mu.Lock()
	first := s.conns == 0
	s.mu.Unlock()
	c, ack, err := dialMQTT(addr, s.id, first)
	if err != nil {
		return nil, err
	}
	if first {
		sub := packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: s.filter, QoS: 2}}}
		if err := c.write(packet.AppendSubscribe(nil, &sub, packet.Version5)); err != nil {
			return nil, err
		}
		h, body, err := c.read(5 * time.Second)
		var sa packet.SubAck
		if err == nil {
			err = packet.DecodeSubAck(&sa, h.Type, body, packet.Version5)
		}
		if err == nil && (h.Type != packet.SUBACK || len(sa.Reasons) != 1 || sa.Reasons[0] != 2) {
			err = fmt.Errorf("SUBACK %v %v", h.Type, sa.Reasons)
		}
		if err != nil {
			c.close()
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		c.nc.SetReadDeadline(time.Time{})
	}
	s.mu.Lock()
	if !first && !ack.SessionPresent {
		s.lostSession++
	}
	s.conns++
	s.cur = c
	s.mu.Unlock()
	done = make(chan struct{})
	go func() {
		defer close(done)
		s.serve(c)
	}()
	return done, nil
}

func (s *durSub) serve(c *mconn) {
	defer func() {
		c.close()
		s.mu.Lock()
		if s.cur == c {
			s.cur = nil
		}
		s.mu.Unlock()
	}()
	var p packet.Publish
	var a packet.Ack
	for {
		h, body, err := c.read(0)
		if err != nil {
			return
		}
		switch h.Type {
		case packet.PUBLISH:
			if err := packet.DecodePublish(&p, h.Flags, body, packet.Version5); err != nil {
				s.protoErr("bad PUBLISH: %v", err)
				return
			}
			key := string(p.Payload)
			s.mu.Lock()
			if s.cur != c {
				// A real client stops using a connection once it opened its successor; what
				// the old one still carries is re-sent on the new one (DUP, same id).
				s.mu.Unlock()
				continue
			}
			switch p.QoS {
			case 1:
				s.got[key]++
			case 2:
				if _, dup := s.awaitRel[p.PacketID]; dup {
					s.dupReceipts++
				} else {
					s.awaitRel[p.PacketID] = key
					s.got[key]++
				}
			default:
				s.protoErrs = append(s.protoErrs, "QoS 0 delivery of "+key)
			}
			s.mu.Unlock()
			t := packet.PUBACK
			if p.QoS == 2 {
				t = packet.PUBREC
			}
			if c.ack(t, p.PacketID) != nil {
				return
			}
		case packet.PUBREL:
			if err := packet.DecodeAck(&a, h.Type, body, packet.Version5); err != nil {
				s.protoErr("bad PUBREL: %v", err)
				return
			}
			s.mu.Lock()
			if s.cur != c {
				s.mu.Unlock()
				continue
			}
			delete(s.awaitRel, a.PacketID)
			s.mu.Unlock()
			if c.ack(packet.PUBCOMP, a.PacketID) != nil {
				return
			}
		case packet.DISCONNECT: // taken over or shutting down: the socket closes next
		default:
			s.protoErr("unexpected %v", h.Type)
		}
	}
}

func (s *durSub) protoErr(format string, args ...any) {
	s.mu.Lock()
	s.protoErrs = append(s.protoErrs, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

// online reports whether a connection is open.
func (s *durSub) online() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil
}

// run keeps the subscriber connected until ctx ends, reconnecting (clean start 0) after
// every lost connection.
func (s *durSub) run(ctx context.Context, addr string) {
	for ctx.Err() == nil {
		done, err := s.connect(addr)
		if err != nil {
			retryPause(ctx)
			continue
		}
		select {
		case <-done:
		case <-ctx.Done():
			s.mu.Lock()
			if s.cur != nil {
				s.cur.close()
			}
			s.mu.Unlock()
			<-done
		}
	}
}

// retryPause is the reconnection back-off while the broker is down.
func retryPause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Millisecond):
	}
}

// durPub publishes numbered messages at one QoS with a window, on a persistent session.
// After a reconnection it resends what was not acknowledged with DUP=1 and the same packet
// identifier, and PUBREL for what was PUBREC'd ([MQTT-4.4.0-1]).
type durPub struct {
	id, topic string
	qos       byte
	window    int

	mu          sync.Mutex
	next        int
	inflight    map[uint16]*pubMsg
	acked       map[int]bool // sequence → acknowledged with a reason < 0x80
	refused     int          // acknowledged with a reason ≥ 0x80
	noMatch     []int        // sequences acknowledged with 0x10 No matching subscribers
	strayAcks   []string
	conns       int
	lostSession int
	stop        bool        // send nothing new
	gate        func() bool // when set, the publisher connects only while it returns true
	wake        chan struct{}
}

type pubMsg struct {
	seq int
	id  uint16
	rec bool // PUBREC received: PUBREL sent, awaiting PUBCOMP
}

func newDurPub(id, topic string, qos byte, window int) *durPub {
	return &durPub{id: id, topic: topic, qos: qos, window: window, inflight: map[uint16]*pubMsg{},
		acked: map[int]bool{}, wake: make(chan struct{}, 1)}
}

func (p *durPub) payload(seq int) string { return fmt.Sprintf("%s-%d", p.topic, seq) }

func (p *durPub) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *durPub) publishPacket(m *pubMsg, dup bool) []byte {
	return packet.AppendPublish(nil, &packet.Publish{Dup: dup, QoS: p.qos, Topic: p.topic, PacketID: m.id,
		Payload: []byte(p.payload(m.seq))}, packet.Version5)
}

// stopSending stops new messages; what is in flight still completes.
func (p *durPub) stopSending() {
	p.mu.Lock()
	p.stop = true
	p.mu.Unlock()
	p.signal()
}

// idle reports whether nothing is in flight.
func (p *durPub) idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.inflight) == 0
}

// run publishes until ctx ends, reconnecting (clean start 0) after every lost connection.
func (p *durPub) run(ctx context.Context, addr string) {
	for ctx.Err() == nil {
		p.mu.Lock()
		first := p.conns == 0
		p.mu.Unlock()
		if p.gate != nil && !p.gate() {
			retryPause(ctx)
			continue
		}
		c, ack, err := dialMQTT(addr, p.id, first)
		if err != nil {
			retryPause(ctx)
			continue
		}
		p.mu.Lock()
		if !first && !ack.SessionPresent {
			p.lostSession++
		}
		p.conns++
		var resend []byte
		for _, m := range p.sortedInflight() {
			if m.rec {
				resend = packet.AppendAck(resend, &packet.Ack{Type: packet.PUBREL, PacketID: m.id}, packet.Version5)
			} else {
				resend = append(resend, p.publishPacket(m, true)...) // DUP=1, same identifier [MQTT-3.3.1-1]
			}
		}
		p.mu.Unlock()
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.serve(c)
		}()
		if len(resend) == 0 || c.write(resend) == nil {
			p.sendLoop(ctx, c, done)
		}
		c.close()
		<-done
	}
}

func (p *durPub) sortedInflight() []*pubMsg {
	ms := make([]*pubMsg, 0, len(p.inflight))
	for _, m := range p.inflight {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *pubMsg) int { return a.seq - b.seq })
	return ms
}

// sendLoop sends new messages while the window allows, until the connection or ctx ends.
func (p *durPub) sendLoop(ctx context.Context, c *mconn, done chan struct{}) {
	for {
		var out []byte
		p.mu.Lock()
		for !p.stop && len(p.inflight) < p.window {
			m := &pubMsg{seq: p.next, id: uint16(p.next%60000 + 1)}
			p.next++
			p.inflight[m.id] = m
			out = append(out, p.publishPacket(m, false)...)
		}
		p.mu.Unlock()
		if len(out) > 0 && c.write(out) != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-p.wake:
		}
	}
}

// serve handles the acknowledgements of one connection.
func (p *durPub) serve(c *mconn) {
	var a packet.Ack
	for {
		h, body, err := c.read(0)
		if err != nil {
			return
		}
		if h.Type == packet.DISCONNECT {
			continue
		}
		if h.Type != packet.PUBACK && h.Type != packet.PUBREC && h.Type != packet.PUBCOMP {
			p.stray("unexpected %v", h.Type)
			continue
		}
		if err := packet.DecodeAck(&a, h.Type, body, packet.Version5); err != nil {
			p.stray("bad %v: %v", h.Type, err)
			return
		}
		var rel bool
		p.mu.Lock()
		m := p.inflight[a.PacketID]
		switch {
		case m == nil:
			p.strayAcks = append(p.strayAcks, fmt.Sprintf("%v %d for nothing in flight", h.Type, a.PacketID))
		case h.Type == packet.PUBACK && p.qos == 1, h.Type == packet.PUBREC && p.qos == 2 && !m.rec:
			if a.Reason.IsError() {
				p.refused++
				delete(p.inflight, m.id) // the flow ends with an error acknowledgement
			} else {
				p.acked[m.seq] = true
				if a.Reason == packet.NoMatchingSubscribers {
					p.noMatch = append(p.noMatch, m.seq)
				}
				if p.qos == 1 {
					delete(p.inflight, m.id)
				} else {
					m.rec, rel = true, true
				}
			}
		case h.Type == packet.PUBREC && m.rec:
			rel = true // PUBREC again (the DUP PUBLISH crossed the PUBREL): answer again
		case h.Type == packet.PUBCOMP && m.rec:
			delete(p.inflight, m.id)
		default:
			p.strayAcks = append(p.strayAcks, fmt.Sprintf("%v %d (reason %#x) in state rec=%v", h.Type, a.PacketID, byte(a.Reason), m.rec))
		}
		p.mu.Unlock()
		p.signal()
		if rel && c.ack(packet.PUBREL, a.PacketID) != nil {
			return
		}
	}
}

func (p *durPub) stray(format string, args ...any) {
	p.mu.Lock()
	p.strayAcks = append(p.strayAcks, fmt.Sprintf(format, args...))
	p.mu.Unlock()
}

// durCheck is the verdict on a run: every acknowledged message of pubs reached sub (QoS 2:
// exactly once), and no QoS 2 message was delivered twice.
type durCheck struct {
	total, q1, q2, dupQ1 int
	problems             []string
}

// missing lists acknowledged messages not yet delivered (at most max of them).
func durMissing(sub *durSub, pubs []*durPub, max int) []string {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	var miss []string
	for _, p := range pubs {
		p.mu.Lock()
		for seq := range p.acked {
			if k := p.payload(seq); sub.got[k] == 0 {
				miss = append(miss, k)
			}
		}
		p.mu.Unlock()
	}
	slices.Sort(miss)
	return miss[:min(len(miss), max)]
}

func durVerify(sub *durSub, pubs []*durPub) durCheck {
	var r durCheck
	sub.mu.Lock()
	defer sub.mu.Unlock()
	bad := func(format string, args ...any) {
		if len(r.problems) < 30 {
			r.problems = append(r.problems, fmt.Sprintf(format, args...))
		}
	}
	for _, p := range pubs {
		p.mu.Lock()
		for seq := range p.next {
			k := p.payload(seq)
			n := sub.got[k]
			switch {
			case p.acked[seq] && n == 0:
				bad("acknowledged QoS %d message %s never delivered", p.qos, k)
			case p.qos == 2 && n > 1:
				bad("QoS 2 message %s delivered %d times (acknowledged: %v)", k, n, p.acked[seq])
			case p.qos == 1 && n > 1:
				r.dupQ1 += n - 1
			}
		}
		r.total += p.next
		if p.qos == 1 {
			r.q1 += p.next
		} else {
			r.q2 += p.next
		}
		if p.lostSession > 0 {
			bad("publisher %s: %d reconnections found no session", p.id, p.lostSession)
		}
		for _, s := range p.strayAcks[:min(len(p.strayAcks), 5)] {
			bad("publisher %s: %s", p.id, s)
		}
		if len(p.noMatch) > 0 {
			bad("publisher %s: %d publications acknowledged with 0x10 No matching subscribers although the persistent subscriber matches (a full session queue drops them); first %v",
				p.id, len(p.noMatch), p.noMatch[:min(len(p.noMatch), 10)])
		}
		if p.refused > 0 {
			bad("publisher %s: %d publications refused (reason >= 0x80) by a healthy broker", p.id, p.refused)
		}
		p.mu.Unlock()
	}
	for k := range sub.got {
		if !strings.HasPrefix(k, "crash/") && !strings.HasPrefix(k, "takeover/") {
			bad("unknown message %q delivered", k)
		}
	}
	if sub.lostSession > 0 {
		bad("subscriber: %d reconnections found no session", sub.lostSession)
	}
	for _, s := range sub.protoErrs[:min(len(sub.protoErrs), 5)] {
		bad("subscriber: %s", s)
	}
	return r
}

// durDrain stops new publications and waits until every publisher has nothing in flight
// and every acknowledged message was delivered.
func durDrain(sub *durSub, pubs []*durPub, timeout time.Duration) error {
	for _, p := range pubs {
		p.stopSending()
	}
	deadline := time.Now().Add(timeout)
	for {
		idle := true
		for _, p := range pubs {
			idle = idle && p.idle()
		}
		miss := durMissing(sub, pubs, 10)
		if idle && len(miss) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(fmt.Sprint("drain timed out: publishers idle ", idle, "; acknowledged but not delivered (first 10): ", miss))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
