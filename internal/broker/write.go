package broker

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"vitalmq/internal/packet"
	"vitalmq/internal/session"
)

// startWriter opens the connection's write side with the CONNACK as the first bytes it
// writes: a DISCONNECT from a takeover, a kick or a shutdown can only follow it
// [MQTT-3.2.0-1] [MQTT-3.14.0-1]. A connection already closed by one sends nothing.
func (c *conn) startWriter(connack []byte) {
	c.outMu.Lock()
	c.writing = true
	if !c.closing.Load() {
		c.pending = append(connack, c.pending...)
	}
	c.unlockFlush()
}

// writeBufSize is the size of a pooled write buffer: a burst of deliveries to a busy
// subscriber, or a device's acknowledgements, fit in it.
const writeBufSize = 2048

// writeBufs holds write buffers between bursts: an idle connection keeps none, and a busy
// one does not allocate (and grow) a new one for every burst it writes.
var writeBufs = sync.Pool{New: func() any { return new([writeBufSize]byte) }}

// out returns pending for appending to: a pooled buffer when there is none. Called with
// outMu held, on the paths every message takes.
func (c *conn) out() []byte {
	if c.pending == nil {
		c.pending = writeBufs.Get().(*[writeBufSize]byte)[:0]
	}
	return c.pending
}

// putWriteBuf gives a write buffer back once it is written and nothing refers to it: one
// of the pool's size (from out, or grown to it); a larger one is left to the collector.
func putWriteBuf(b []byte) {
	if cap(b) == writeBufSize {
		a := (*[writeBufSize]byte)(b[:writeBufSize])
		if poisonWriteBufs.Load() {
			for i := range a {
				a[i] = 0xEE
			}
		}
		writeBufs.Put(a)
	}
}

// poisonWriteBufs (set in tests) fills a buffer given back with 0xEE, so that one given
// back while a connection still writes from it shows at once as garbage on the wire, not
// only when another connection happens to reuse it meanwhile.
var poisonWriteBufs atomic.Bool

// unlockFlush releases outMu and, when there is something to write (or to close) and no
// flusher runs, hands the flush to one (Server.flushes: a pooled goroutine, which spares a
// new goroutine and its stack's growth to crypto/tls's Write, 4 % of the broker's CPU in
// scenario 4, docs/PERFORMANCE.md session 17). Producers append to pending under outMu and
// leave through here.
func (c *conn) unlockFlush() {
	start := c.writing && !c.flushing && !c.closed && (len(c.pending) > 0 || c.closing.Load())
	if start {
		c.flushing = true
	}
	c.outMu.Unlock()
	if start {
		c.s.flushes.hand(c.s, c)
	}
}

// unlockFlushBy is unlockFlush for a delivery routed by the reader of conn by (nil: none):
// where a flusher would start, by claims the write instead, and makes it before it may
// block (flushDeferred, writeClaimed), at most maxClaims connections at a time. A
// flusher handed the connection would wait in the run queue behind the other runnable
// goroutines, the readers woken with this one among them: the tail of a lone delivery's
// latency (scenario 4, docs/PERFORMANCE.md, session 18). A claim holds nothing: a flusher
// started meanwhile by another producer writes the bytes instead.
func (c *conn) unlockFlushBy(by *conn) {
	if by == nil || by == c || c.sock == nil || c.flushing || !c.writing || c.closing.Load() || len(c.pending) > maxClaimedPending {
		c.unlockFlush()
		return
	}
	switch {
	case slices.Contains(by.claimed, c):
	case len(by.claimed) < maxClaims:
		by.claimed = append(by.claimed, c)
	default:
		c.unlockFlush()
		return
	}
	c.outMu.Unlock()
}

// maxClaims is how many connections a reader writes for at a time (unlockFlushBy); the
// deliveries of a fan-out to more go to flushers, which other cores may run meanwhile.
// maxClaimedPending: past it a flusher writes a claimed connection's pending bytes, so
// that a reader going through a long burst does not hold back a subscriber's deliveries
// until they reach MaxPendingWrite (QoS 0 messages then dropped).
const (
	maxClaims         = 8
	maxClaimedPending = 32 << 10
)

// writeClaimed writes what the reader claimed to write (unlockFlushBy).
func (c *conn) writeClaimed() {
	for len(c.claimed) > 0 {
		c.popClaimed().writeNow()
	}
}

// handClaimed hands what the reader claimed to write to flushers: the reader ends.
func (c *conn) handClaimed() {
	for len(c.claimed) > 0 {
		d := c.popClaimed()
		d.outMu.Lock()
		d.unlockFlush()
	}
}

// popClaimed takes a connection off the claimed list: one whose write panics is not
// handed on again (it ended its writer).
func (c *conn) popClaimed() *conn {
	n := len(c.claimed) - 1
	d := c.claimed[n]
	c.claimed[n] = nil
	c.claimed = c.claimed[:n]
	return d
}

// writeNow writes the connection's pending bytes in one write that never waits for this
// client: for another connection's reader (writeClaimed), which must not (T76), or for its
// own reader while deliveries it claimed wait (flushAcks). The socket takes what it has
// room for, and a flusher writes the rest (sock.noWait). Where a flusher runs already, or
// the socket cannot be written without waiting now, one does it all.
func (c *conn) writeNow() {
	defer func() {
		if r := recover(); r != nil { // the writer ends, not the reader that wrote for it
			c.s.logPanic("writer", r)
			c.sock.Close() // first: crypto/tls's close_notify would wait for room
			c.endWriter()
		}
	}()
	c.outMu.Lock()
	c.writePendingLocked(false)
}

// writePendingLocked writes pending in one write, on the caller's goroutine, unless a
// flusher runs, or has to end the write side; whatever other producers add meanwhile goes
// to a flusher. wait: the write may wait for room (to WriteTimeout); otherwise it never
// does (sock.noWait), and a flusher writes what the socket did not take. Called with
// outMu held, which it releases.
func (c *conn) writePendingLocked(wait bool) {
	if !c.writing || c.flushing || c.closed || c.closing.Load() || len(c.pending) == 0 || !wait && !c.sock.noWait() {
		c.unlockFlush() // a flusher where one is needed
		return
	}
	c.flushing = true
	buf := c.pending
	c.pending = nil
	c.outMu.Unlock()
	if wait {
		c.extendWriteDeadline()
	}
	_, err := c.nc.Write(buf)
	left := !wait && c.sock.waitAgain()
	if err != nil {
		c.endWriter()
		return
	}
	putWriteBuf(buf)
	if left {
		testHookWriteLeft()
		c.s.flushes.hand(c.s, c) // flushing stays set: the flusher drains the backlog
		return
	}
	c.outMu.Lock()
	c.flushing = false
	c.unlockFlush() // a flusher for what others added meanwhile
}

// testHookWriteLeft is called when a write that could not wait left a backlog (tests
// count them: OnWriteLeft).
var testHookWriteLeft = func() {}

// flush writes what producers appended to pending, many packets per write, until nothing is
// left, then returns (its flusher goroutine goes back to the pool): an idle connection has
// no writer goroutine and no write buffer. Once the connection is closing and everything is
// written, it closes the socket and writerDone.
func (c *conn) flush() {
	defer func() {
		if r := recover(); r != nil {
			c.s.logPanic("writer", r)
			c.endWriter()
		}
	}()
	var buf []byte
	for {
		c.outMu.Lock()
		if len(c.pending) == 0 && c.sock != nil && c.sock.backlogged() {
			// What a write that could not wait left (writeNow): written before
			// anything else, and before the connection is done with.
			c.outMu.Unlock()
			if !c.closing.Load() {
				c.extendWriteDeadline()
			}
			if err := c.sock.drain(); err != nil {
				c.endWriter()
				return
			}
			continue
		}
		if len(c.pending) == 0 {
			putWriteBuf(c.pending)
			putWriteBuf(buf)
			c.pending = nil
			if c.closing.Load() { // flushing stays set: no second flusher while this one ends the write side
				c.outMu.Unlock()
				c.endWriter()
				return
			}
			c.flushing = false
			c.outMu.Unlock()
			return
		}
		buf, c.pending = c.pending, buf[:0]
		closing := c.closing.Load()
		c.outMu.Unlock()
		if !closing {
			c.extendWriteDeadline()
		}
		if _, err := c.nc.Write(buf); err != nil {
			c.endWriter()
			return
		}
		if cap(buf) > 64<<10 {
			buf = nil // do not keep a burst's buffer
		}
		// buf is pending again at the next swap (or goes back to the pool): the socket's
		// Write keeps no reference to it.
	}
}

// extendWriteDeadline keeps the write deadline WriteTimeout ahead (T76: a client that stops
// reading is dropped). Moving it is a runtime timer update: done once a quarter of it is used
// up. Called by the one flusher running.
func (c *conn) extendWriteDeadline() {
	if now := time.Now(); c.wdl.Sub(now) < c.s.cfg.WriteTimeout*3/4 {
		c.wdl = now.Add(c.s.cfg.WriteTimeout)
		c.nc.SetWriteDeadline(c.wdl)
	}
}

// endWriter closes the write side for good: nothing more is written, the socket is closed
// and writerDone is closed (once).
func (c *conn) endWriter() {
	c.outMu.Lock()
	c.pending, c.flushing = nil, false
	c.closing.Store(true)
	first := !c.closed
	c.closed = true
	c.outMu.Unlock()
	c.closeSocket()
	if first {
		close(c.writerDone)
	}
}

// queue appends an encoded packet to the connection's pending bytes. A packet larger than
// the client's Maximum Packet Size is discarded (a SUBACK for a client that subscribed to
// more filters than its own limit lets it hear about) [MQTT-3.1.2-24].
func (c *conn) queue(enc func([]byte) []byte) {
	c.outMu.Lock()
	if !c.closing.Load() {
		n := len(c.pending)
		c.pending = enc(c.pending)
		c.fitLocked(n)
	}
	c.unlockFlush()
}

// fitLocked discards the packet appended to pending after its first n bytes when it is
// larger than the client's Maximum Packet Size [MQTT-3.1.2-24]. Called with outMu held.
func (c *conn) fitLocked(n int) {
	if len(c.pending)-n > c.maxOut {
		c.pending = c.pending[:n]
		if n == 0 { // nothing to write: no buffer kept (nothing else refers to it)
			putWriteBuf(c.pending)
			c.pending = nil
		}
	}
}

func (c *conn) sendAck(a *packet.Ack) {
	c.outMu.Lock()
	c.appendAckLocked(a)
	c.unlockFlush()
}

// appendAckLocked appends an acknowledgement to pending (not through queue: no closure per
// acknowledgement). Called with outMu held.
func (c *conn) appendAckLocked(a *packet.Ack) {
	if !c.closing.Load() {
		n := len(c.pending)
		c.pending = packet.AppendAck(c.out(), a, c.version)
		c.fitLocked(n)
	}
}

// sendAckDeferred queues an acknowledgement from the reader goroutine to its own client
// without starting a flusher: the reader writes it itself before it next waits
// (flushDeferred), with the acknowledgements of the other packets of the same read. A
// flusher started meanwhile by a delivery takes it along. This saves a goroutine per
// publication, and a delivery's flusher is not pushed back in the run queue behind it.
func (c *conn) sendAckDeferred(a *packet.Ack) {
	c.outMu.Lock()
	c.appendAckLocked(a)
	c.deferred = !c.closing.Load()
	if c.deferred {
		c.outMu.Unlock()
		return
	}
	c.unlockFlush() // closing: a flusher ends the write side
}

// flushDeferred writes what the reader deferred before it may block: the deliveries it
// claimed (unlockFlushBy), then its own client's acknowledgements (flushAcks).
func (c *conn) flushDeferred() {
	if len(c.claimed) > 0 {
		c.writeClaimed() // first: those never wait, this client's own write may
	}
	c.flushAcks()
}

// flushAcks writes what sendAckDeferred left pending, on the reader goroutine, in one
// write; whatever other producers add meanwhile goes to a flusher goroutine, so the reader
// is back to reading after one write (or WriteTimeout). The reader calls it before
// reading a packet that is not whole in its buffer, and before it may block.
func (c *conn) flushAcks() {
	c.outMu.Lock()
	if !c.deferred {
		c.outMu.Unlock()
		return
	}
	c.deferred = false
	// Deliveries it claimed wait for this write: then it must not wait for this client
	// either (there is a sock: see readAll).
	c.writePendingLocked(len(c.claimed) == 0 || c.sock == nil)
}

func (c *conn) sendSubAck(a *packet.SubAck) {
	c.queue(func(b []byte) []byte { return packet.AppendSubAck(b, a, c.version) })
}

// sendPublish encodes a delivery onto the connection. It returns false when the message
// was not sent and must not be tracked: expired, larger than the client accepts, or a
// QoS 0 message dropped because the client is not reading. Called with c.ss.mu held.
func (c *conn) sendPublish(d session.Delivery, id uint16, dup bool, now time.Time, by *conn) bool {
	m := d.Msg
	if !dup && m.Expired(now) {
		return false // [MQTT-3.3.2-5]; a resent message is completed: the client may hold its id
	}
	if d.QoS == 0 && len(d.SubIDs) == 0 && c.aliasOutMax == 0 && m.Expiry.IsZero() {
		return c.sendShared(d, by)
	}
	// Field by field: a composite literal would be built in a temporary as large as p and
	// copied, doubling this frame, which is on every delivery's path (see conn.serve).
	var p packet.Publish
	p.Dup, p.QoS, p.Retain, p.Topic, p.PacketID, p.Payload = dup, d.QoS, d.Retain, m.Topic, id, m.Payload
	if c.version == packet.Version5 {
		setProps5(&p, d, now)
	}
	n, _ := packet.PublishSize(&p, c.version)
	if c.aliasOutMax > 0 {
		n += 3 // a Topic Alias property may be added below
	}
	if (packet.FixedHeader{Remaining: n}).Size() > c.maxOut {
		c.s.stats.dropped.Add(1)
		return false // [MQTT-3.1.2-25] never more than the client's Maximum Packet Size
	}
	c.outMu.Lock()
	if c.closing.Load() {
		c.outMu.Unlock()
		return id != 0 // a QoS 1/2 message stays in flight for the next connection
	}
	if id == 0 && len(c.pending) > c.s.cfg.MaxPendingWrite {
		c.outMu.Unlock()
		c.s.stats.dropped.Add(1)
		return false // T76: a slow consumer loses QoS 0, never stalls the publisher
	}
	if c.aliasOutMax > 0 {
		if a, ok := c.aliasOut[m.Topic]; ok {
			p.Topic = ""
			p.Props.TopicAlias = a
			p.Props.Set(packet.PropTopicAlias)
		} else if len(c.aliasOut) < int(c.aliasOutMax) {
			if c.aliasOut == nil {
				c.aliasOut = make(map[string]uint16)
			}
			a := uint16(len(c.aliasOut) + 1) // [MQTT-3.3.2-10] within the client's Topic Alias Maximum
			c.aliasOut[m.Topic] = a
			p.Props.TopicAlias = a
			p.Props.Set(packet.PropTopicAlias)
		}
	}
	c.pending = packet.AppendPublish(c.out(), &p, c.version)
	c.unlockFlushBy(by)
	if id == 0 {
		c.s.stats.sent.Add(1)
	}
	return true
}

// setProps5 sets the 5.0 properties of d's PUBLISH. Never inlined: the copy of the
// message's properties would sit in sendPublish's stack frame, on every delivery's path,
// also for 3.1.1 clients (see conn.serve).
//
//go:noinline
func setProps5(p *packet.Publish, d session.Delivery, now time.Time) {
	m := d.Msg
	p.Props = m.Properties()
	if !m.Expiry.IsZero() { // the remaining lifetime [MQTT-3.3.2-6]
		p.Props.MessageExpiry = uint32(max(1, math.Ceil(m.Expiry.Sub(now).Seconds())))
		p.Props.Set(packet.PropMessageExpiry)
	}
	p.Props.SubscriptionIDs = d.SubIDs
}

// sendShared sends a QoS 0 delivery whose bytes are the same for every subscriber of the
// same protocol version. The first such delivery of a message encodes it straight into
// the connection's buffer; later ones encode it once more, into the message's cache, and
// copy that (see session.Message.Encoded).
func (c *conn) sendShared(d session.Delivery, by *conn) bool {
	m := d.Msg
	slot := session.EncodedSlot(c.version == packet.Version5, d.Retain)
	b, first := m.Encoded(slot)
	var p packet.Publish
	size := len(b)
	if b == nil {
		p.Retain, p.Topic, p.Payload = d.Retain, m.Topic, m.Payload
		if c.version == packet.Version5 {
			setSharedProps5(&p, m)
		}
		n, _ := packet.PublishSize(&p, c.version)
		size = packet.FixedHeader{Remaining: n}.Size()
		if !first {
			b = packet.AppendPublish(make([]byte, 0, size), &p, c.version)
			m.SetEncoded(slot, b)
		}
	}
	if size > c.maxOut {
		c.s.stats.dropped.Add(1)
		return false // [MQTT-3.1.2-25]
	}
	c.outMu.Lock()
	if c.closing.Load() || len(c.pending) > c.s.cfg.MaxPendingWrite {
		c.outMu.Unlock()
		c.s.stats.dropped.Add(1)
		return false
	}
	if b != nil {
		c.pending = append(c.out(), b...)
	} else {
		c.pending = packet.AppendPublish(c.out(), &p, c.version)
	}
	c.unlockFlushBy(by)
	c.s.stats.sent.Add(1)
	return true
}

// setSharedProps5 sets a shared delivery's 5.0 properties; never inlined, as setProps5.
//
//go:noinline
func setSharedProps5(p *packet.Publish, m *session.Message) { p.Props = m.Properties() }

// kick asks the connection to close: a 5.0 client is told why (DISCONNECT with rc,
// [MQTT-3.14.0-1] server-initiated), pending bytes are flushed, then the socket is closed.
func (c *conn) kick(rc packet.ReasonCode) {
	c.outMu.Lock()
	writing := c.writing
	if !c.closing.Load() && writing && c.version == packet.Version5 && c.maxOut >= 3 {
		c.pending = packet.AppendDisconnect(c.pending, &packet.Disconnect{Reason: rc.ForDisconnect()}, c.version)
	}
	c.closing.Store(true)
	if !writing {
		c.outMu.Unlock()
		c.closeSocket()
		return
	}
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.unlockFlush()
}

// normalDisconnectByServer marks the connection as ended by the server for a reason that
// must not publish the client's will (an administrative kick of a revoked identity).
func (c *conn) normalDisconnectByServer() {
	c.outMu.Lock()
	c.suppressWill = true
	c.outMu.Unlock()
}

// finish ends the connection: reports a protocol error to a 5.0 client, flushes, detaches
// the session and publishes the will when the client did not disconnect normally.
func (c *conn) finish(err error) {
	s := c.s
	c.outMu.Lock()
	writing := c.writing
	if writing && !c.closing.Load() && c.version == packet.Version5 {
		if rc, ok := errReason(err); ok { // [MQTT-4.13.1-1] DISCONNECT with the reason, then close
			d := packet.Disconnect{Reason: rc.ForDisconnect()}
			if c.problemInfo && err != nil {
				msg := err.Error()
				if len(msg) > 128 || !utf8.ValidString(msg) {
					msg = rc.Error()
				}
				d.Props.ReasonString = msg
				d.Props.Set(packet.PropReasonString)
			}
			b := packet.AppendDisconnect(nil, &d, c.version)
			if len(b) > c.maxOut { // never more than the client accepts [MQTT-3.1.2-24]
				d.Props = packet.Properties{}
				b = packet.AppendDisconnect(nil, &d, c.version)
			}
			if len(b) <= c.maxOut {
				c.pending = append(c.pending, b...)
			}
		}
	}
	c.closing.Store(true)
	if writing {
		c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		c.unlockFlush()
		<-c.writerDone
	} else {
		c.outMu.Unlock()
	}
	c.nc.Close()
	if c.sock != nil {
		c.s.idle.Remove(c.idleKey)
		if c.wakeTime != nil {
			c.wakeTime.Stop()
		}
	}
	if c.ss != nil {
		c.detach()
		s.stats.connected.Add(-1) // after: a client counted gone has its session offline
	}
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.perAddr.Release(c.addrKey)
	close(c.done)
	if err != nil && err != errClose {
		s.log.Debug("connection closed", "remote", c.nc.RemoteAddr().String(), "err", err)
	}
}

// detach takes the session offline: schedules its expiry, publishes or schedules the
// will, and hands unfinished shared-subscription messages to another group member.
func (c *conn) detach() {
	s, ss := c.s, c.ss
	now := time.Now()
	var will *session.Message
	var shared []session.Delivery
	var tx txn
	ended := false
	s.mu.Lock()
	ss.mu.Lock()
	if ss.owner == c {
		ss.owner = nil
		ss.conn = nil
		ss.relieveLocked(s)
		ss.online.Store(false)
		c.outMu.Lock()
		suppress := c.suppressWill
		c.outMu.Unlock()
		if ss.will != nil {
			switch {
			case c.normalDisconnect || suppress:
				ss.will = nil // [MQTT-3.1.2-10]
			case ss.willDelay == 0 || c.expiry == 0:
				will = ss.takeWill() // [MQTT-3.1.2-8]
			default: // published by the janitor unless the session resumes first [MQTT-3.1.3-9]
				ss.willAt = now.Add(time.Duration(min(ss.willDelay, c.expiry)) * time.Second)
			}
		}
		// Shared-subscription messages not yet sent, and QoS 1 ones not yet acknowledged, go
		// to another member; a QoS 2 message in flight stays (its identifier is in use).
		for _, e := range ss.st.Filter(func(e *session.Entry, sent bool) bool {
			return e.Delivery.Group == "" || sent && e.Delivery.QoS == 2
		}) {
			shared = append(shared, e.Delivery)
			ss.forget(s, e, &tx)
		}
		ss.st.ExpiryInterval = c.expiry
		switch {
		case c.expiry == 0: // [MQTT-3.1.2-23] the session ends with the connection
			ss.ended = true
			ended = true
			if s.sessions[ss.clientID] == ss {
				delete(s.sessions, ss.clientID)
			}
			if ss.stored && s.persist != nil {
				tx.cs.Add(session.Op{Kind: session.DeleteSession, ClientID: ss.clientID})
			}
		case c.expiry != math.MaxUint32:
			ss.expireAt = now.Add(time.Duration(c.expiry) * time.Second)
			fallthrough
		default:
			if ss.persistent(s) {
				tx.cs.Add(session.Op{Kind: session.PutMeta, Meta: ss.meta()})
			}
		}
		s.scheduleLocked(ss)
	}
	ss.mu.Unlock()
	s.mu.Unlock()
	if len(shared) > 0 {
		s.redeliverShared(ss, shared, &tx)
	}
	if ended {
		s.dropSubscriptions(ss)
	}
	if will != nil {
		s.sendWill(c.client, will, &tx)
	}
	s.commit(&tx, nil)
}

// sendWill publishes a will if its client may still publish there.
func (s *Server) sendWill(cl *Client, w *session.Message, tx *txn) {
	if cl == nil || s.cfg.Authorizer != nil && !s.cfg.Authorizer.CanPublish(cl, w.Topic) {
		return
	}
	if w.Retain {
		s.retain(w, tx)
	}
	s.route(w, tx, time.Now())
}
