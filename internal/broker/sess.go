package broker

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"vitalmq/internal/packet"
	"vitalmq/internal/session"
)

// sess is a session as the broker holds it: the pure state under a mutex, the connection
// it is attached to (nil while offline), and its pending will.
type sess struct {
	clientID string
	gen      uint64                 // incarnation (session.Meta.Gen)
	client   atomic.Pointer[Client] // identity of the latest owner, for CanReceive
	online   atomic.Bool

	mu        sync.Mutex
	st        *session.State
	conn      *conn // nil while offline
	owner     *conn // the connection that claimed the session (set before conn, under Server.mu)
	will      *session.Message
	willDelay uint32
	// willExpiry is the will's Message Expiry Interval in seconds (0: none): it counts from
	// when the will is published, not from CONNECT (§3.1.3.2.4).
	willExpiry uint32
	willAt     time.Time // when a pending delayed will is due; zero: none pending
	expireAt   time.Time // when an offline session ends; zero: not scheduled
	ended      bool
	// due is the session's place in Server.due (the earliest of willAt and expireAt when it
	// was scheduled) and dueIdx its index there, -1 when absent; both guarded by Server.mu.
	due    time.Time
	dueIdx int
	// waiting lists queued entries (by Seq, ascending: appended at enqueue) whose group
	// commit has not completed: they are
	// not sent before they are stored, or a crash could deliver a QoS 2 message twice.
	waiting []uint64
	stored  bool // the persister may hold this session
	// drained is closed when a queue that was over half full is down to a quarter (nil
	// while not congested); lastAck is when the client last acknowledged a delivery, or
	// was sent one with nothing else in flight (or connected): see acknowledgingLocked.
	drained chan struct{}
	lastAck time.Time
	// waiters are the publishers waiting for this session's queue; nil until the first.
	waiters *waiters

	// inbox is set for an in-process subscriber: deliveries go there instead of a connection.
	inbox chan *session.Message
}

func newSess(clientID string) *sess {
	return &sess{clientID: clientID, gen: rand.Uint64(), st: session.New(clientID), dueIdx: -1}
}

// persistent reports whether the session's entries are stored. Called with ss.mu held.
func (ss *sess) persistent(s *Server) bool {
	return s.persist != nil && ss.inbox == nil && ss.st.ExpiryInterval > 0
}

// meta is the session's durable metadata. Called with ss.mu held.
func (ss *sess) meta() session.Meta {
	m := session.Meta{ClientID: ss.clientID, ExpiryInterval: ss.st.ExpiryInterval, ExpireAt: ss.expireAt,
		Will: ss.will, WillDelay: ss.willDelay, WillExpiry: ss.willExpiry, Gen: ss.gen}
	if ss.conn != nil {
		m.SentThrough = math.MaxUint64 // connected: any entry may be on the wire
	} else {
		for _, e := range ss.st.Inflight {
			m.SentThrough = max(m.SentThrough, e.Seq)
		}
		for _, e := range ss.st.Queue {
			if e.Dup { // sent on an earlier connection and queued again (Requeue)
				m.SentThrough = max(m.SentThrough, e.Seq)
			}
		}
	}
	if c := ss.client.Load(); c != nil {
		m.Username, m.Attrs, m.Anonymous = c.Username, c.Attrs, c.Anonymous
	}
	return m
}

// mayReceive asks the Authorizer whether this session's client may receive a message on topic.
func (ss *sess) mayReceive(s *Server, topicName string) bool {
	if s.cfg.Authorizer == nil || ss.inbox != nil {
		return true
	}
	c := ss.client.Load()
	return c != nil && s.cfg.Authorizer.CanReceive(c, topicName)
}

// takeWill removes and returns the pending will. Called with ss.mu held.
func (ss *sess) takeWill() *session.Message {
	w := ss.will
	ss.will, ss.willAt = nil, time.Time{}
	if w != nil && ss.willExpiry > 0 {
		w = &session.Message{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain, Props: w.Props,
			Origin: w.Origin, Expiry: time.Now().Add(time.Duration(ss.willExpiry) * time.Second)}
	}
	return w
}

// deliver hands a message to the session. QoS 0 goes straight to the connection (and is
// not kept for an offline session); QoS 1/2 is queued with its packet identifier and, for
// a persistent session, recorded in tx and sent once tx is durable. It reports whether
// the message was accepted.
func (ss *sess) deliver(s *Server, d session.Delivery, now time.Time, tx *txn) bool {
	if ss.inbox != nil {
		select {
		case ss.inbox <- d.Msg:
			return true
		default:
			s.stats.dropped.Add(1)
			return false
		}
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return false
	}
	if d.QoS == 0 {
		if ss.conn == nil {
			return false
		}
		return ss.conn.sendPublish(d, 0, false, now, tx.by)
	}
	woken := tx.promise == ss
	if woken {
		ss.waiters.promised-- // this is the publication woken for a place
		tx.promise = nil
	}
	// The publisher may wait for room (flow control) when this session's client is connected
	// and acknowledging, and the publication holds no copy that waits for its commit (with a
	// persister such a copy would block its own session's queue while it waits here).
	waits := tx.pub != nil && tx.pub.ss != ss && len(tx.pump) == 0 && ss.acknowledgingLocked(s, now)
	var e session.Entry
	ok := false
	if !waits || ss.waiters == nil || len(ss.waiters.room) == 0 || woken { // those already waiting go first
		e, ok = ss.st.Enqueue(d, s.cfg.MaxQueuedMessages, s.cfg.MaxQueuedBytes)
	}
	if !ok {
		if waits {
			tx.room = make(chan struct{})
			w, r := ss.waitersLocked(), roomWaiter{tx.room, tx.pub}
			if woken { // it lost its place to a publication that may not wait: next again
				w.room = slices.Insert(w.room, 0, r)
			} else {
				w.room = append(w.room, r)
			}
			ss.relieveLocked(s) // a place may be free already (wakes the first in line)
			return false
		}
		s.dropped("session queue full", ss.clientID)
		tx.dropped++
		return false
	}
	if ss.backlogLocked(s, 2) && ss.acknowledgingLocked(s, now) {
		tx.congested = append(tx.congested, congestion{ss, ss.drainedLocked()})
	}
	if s.persist == nil {
		ss.pumpLocked(s, now, tx.by)
	} else {
		ss.holdForCommitLocked(s, e, tx)
	}
	return true
}

// holdForCommitLocked: with a persister every QoS 1/2 entry waits for the publication's
// commit, stored or not: if the commit fails the publication is refused, and a copy already
// sent would be delivered again when the publisher retries. (A function of its own, so that
// deliver's stack frame does not carry the change record: see conn.serve.)
//
//go:noinline
func (ss *sess) holdForCommitLocked(s *Server, e session.Entry, tx *txn) {
	if ss.persistent(s) {
		tx.cs.Add(session.Op{Kind: session.PutEntry, ClientID: ss.clientID, Entry: e, Gen: ss.gen})
		ss.stored = true
	}
	tx.pump = append(tx.pump, pending{ss, e.Seq})
	ss.waiting = append(ss.waiting, e.Seq)
}

// backlogLocked reports whether more than 1/part of the queue limits is used. Called with
// ss.mu held.
func (ss *sess) backlogLocked(s *Server, part int) bool {
	return len(ss.st.Queue)*part > s.cfg.MaxQueuedMessages || ss.st.QueuedBytes*part > s.cfg.MaxQueuedBytes
}

// acknowledgingLocked reports whether the session's client is connected and not late with
// an acknowledgement: it has nothing in flight, or acknowledged a delivery within
// Config.FlowControlWait (counted from the send when its window was empty). Publishers may
// wait for its queue; an offline client is never waited for, and a stalled one at most
// FlowControlWait after its first unacknowledged delivery (T76). A dashboard that
// subscribed long before the devices started publishing is not stalled: the first burst
// fills its queue before its first acknowledgement can arrive, and with a persister before
// anything is even sent. Called with ss.mu held.
func (ss *sess) acknowledgingLocked(s *Server, now time.Time) bool {
	return ss.conn != nil && !ss.conn.parked.Load() && s.cfg.FlowControlWait > 0 &&
		(len(ss.st.Inflight) == 0 || now.Sub(ss.lastAck) < s.cfg.FlowControlWait)
}

// drainedLocked returns the channel closed when the queue is down to a quarter (or the
// client gone). Called with ss.mu held.
func (ss *sess) drainedLocked() chan struct{} {
	if ss.drained == nil {
		ss.drained = make(chan struct{})
	}
	return ss.drained
}

// committed removes seq from the entries waiting for their commit. Called with ss.mu held.
func (ss *sess) committed(seq uint64) {
	if i, ok := slices.BinarySearch(ss.waiting, seq); ok {
		ss.waiting = slices.Delete(ss.waiting, i, i+1)
	}
}

// relieveLocked wakes the publishers waiting for this session's queue: one publication
// waiting for room per free place (not promised already), and those paused by flow control
// once the queue is down to a quarter; everyone at once when its client is gone or cannot
// read (parked: waiting itself as a publisher). Called with ss.mu held, after anything that
// may free places (pumpLocked calls it).
func (ss *sess) relieveLocked(s *Server) {
	gone := ss.conn == nil || ss.conn.parked.Load()
	w := ss.waiters
	for w != nil && len(w.room) > 0 && (gone || len(ss.st.Queue)+w.promised < s.cfg.MaxQueuedMessages && ss.st.QueuedBytes < s.cfg.MaxQueuedBytes) {
		r := w.room[0]
		close(r.room)
		r.c.unhold() // a no-op for a publisher waiting on its goroutine
		w.room[0] = roomWaiter{}
		w.room = w.room[1:]
		w.promised++
	}
	if ss.drained != nil && (gone || !ss.backlogLocked(s, 4)) {
		close(ss.drained)
		ss.drained = nil
		if w != nil {
			for c := range w.drainers {
				w.resuming = append(w.resuming, c)
			}
			clear(w.drainers)
			w.resumeLocked(drainersAtOnce)
		}
	}
}

// waiters are the publishers waiting for a session's queue (flow control).
type waiters struct {
	// room holds the publications waiting for room in the full queue, in arrival order:
	// each place that frees up wakes one (no thundering herd); promised counts those woken
	// that have not taken their place yet.
	room     []roomWaiter
	promised int
	// drainers are the publishers held (conn.hold) until drained is closed. Then they move
	// to resuming, and are resumed drainersAtOnce at a time: each resumed one resumes the
	// next (resumeNext), so that thousands held for one queue do not start thousands of
	// reader goroutines, each with a stack, at once.
	drainers map[*conn]struct{}
	resuming []*conn
}

// drainersAtOnce is how many of the publishers held for one queue to drain are resumed at
// once (see waiters).
const drainersAtOnce = 16

// resumeLocked resumes up to n of the held drainers waiting to be. Called with the
// session's mu held.
func (w *waiters) resumeLocked(n int) {
	for n > 0 && len(w.resuming) > 0 {
		c := w.resuming[0]
		w.resuming[0] = nil
		w.resuming = w.resuming[1:]
		if c.unhold() { // else resumed already (its wait ran out, or its socket closed)
			n--
		}
	}
}

// resumeNext resumes the next of the held drainers waiting to be: a resumed one calls it.
func (ss *sess) resumeNext() {
	ss.mu.Lock()
	if w := ss.waiters; w != nil {
		w.resumeLocked(1)
	}
	ss.mu.Unlock()
}

// roomWaiter is a publication waiting for room in a session's queue: room is closed when it
// has a place, and c (the publisher) resumed if it is held (conn.hold).
type roomWaiter struct {
	room chan struct{}
	c    *conn
}

// waitersLocked returns ss.waiters, made on first use. Called with ss.mu held.
func (ss *sess) waitersLocked() *waiters {
	if ss.waiters == nil {
		ss.waiters = new(waiters)
	}
	return ss.waiters
}

// undrain withdraws c, held for the queue to drain, when it stops waiting before.
func (ss *sess) undrain(c *conn) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if w := ss.waiters; w != nil {
		delete(w.drainers, c)
	}
}

// stopWaitingRoom withdraws a publication that gave up waiting for room; if it was woken
// meanwhile (or room is nil: it was, and did not take its place), its place goes to the
// next one waiting.
func (ss *sess) stopWaitingRoom(s *Server, room chan struct{}) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	w := ss.waiters // not nil: it waited, or was promised a place
	if room != nil {
		if i := slices.IndexFunc(w.room, func(r roomWaiter) bool { return r.room == room }); i >= 0 {
			w.room = slices.Delete(w.room, i, i+1)
			return
		}
	}
	w.promised--
	ss.relieveLocked(s)
}

// pumpLocked sends queued entries while the window allows, in order, stopping at the
// first entry that is not durable yet. Expired entries are dropped. by is the reader
// routing a publication, which writes the deliveries itself (conn.unlockFlushBy); nil
// elsewhere. Called with ss.mu held.
func (ss *sess) pumpLocked(s *Server, now time.Time, by *conn) {
	defer ss.relieveLocked(s) // sent entries free places in the queue
	c := ss.conn
	if c == nil {
		return
	}
	for len(ss.st.Inflight) < c.sendQuota {
		e, ok := ss.st.Peek()
		if _, stored := slices.BinarySearch(ss.waiting, e.Seq); !ok || stored {
			return
		}
		if c.closing.Load() {
			// Nothing more is written to a closing connection: the entry stays queued, so the
			// next connection sends it as new, or drops it once expired [MQTT-3.3.2-5], instead
			// of resending as DUP (and regardless of expiry) what never left.
			return
		}
		first := len(ss.st.Inflight) == 0
		ss.st.Next()
		if !c.sendPublish(e.Delivery, e.ID, e.Dup, now, by) { // expired or too large [MQTT-3.3.2-5] [MQTT-3.1.2-25]
			ss.discardLocked(s, e)
		} else if first && now.After(ss.lastAck) {
			ss.lastAck = now // the client has something to acknowledge from now on
		}
	}
}

// discardLocked drops an entry that was never sent (pumpLocked). Never inlined, so that
// pumpLocked's stack frame, on every delivery's path, stays small (see conn.serve).
//
//go:noinline
func (ss *sess) discardLocked(s *Server, e session.Entry) {
	ss.st.Drop(e.ID)
	ss.forget(s, e, nil)
}

// forget records the removal of an entry from a persistent session.
func (ss *sess) forget(s *Server, e session.Entry, tx *txn) {
	if !ss.persistent(s) {
		return
	}
	op := session.Op{Kind: session.DeleteEntry, ClientID: ss.clientID, Entry: e}
	if tx != nil {
		tx.cs.Add(op)
		return
	}
	// Lazy: if a crash loses the delete, the entry comes back and is re-sent (QoS 1, as DUP)
	// or resumed with PUBREL (QoS 2 released): both harmless, and a reused packet id is
	// stored later, so it makes the delete durable first.
	s.persist.Commit(&session.ChangeSet{Ops: []session.Op{op}, Lazy: true}, nil)
}

// resumeLocked re-sends what was in flight, in order, then the queue ([MQTT-4.4.0-1]).
// Called with ss.mu held, after ss.conn was set.
func (ss *sess) resumeLocked(s *Server, now time.Time) {
	c := ss.conn
	ss.st.Requeue(c.sendQuota) // never more in flight than the client's Receive Maximum [MQTT-3.3.4-7]
	for _, e := range ss.st.Filter(func(e *session.Entry, sent bool) bool {
		switch {
		case !sent:
			return true
		case e.Released:
			c.sendAck(&packet.Ack{Type: packet.PUBREL, PacketID: e.ID})
			return true
		default:
			return c.sendPublish(e.Delivery, e.ID, true, now, nil) // DUP=1 [MQTT-3.3.1-1]
		}
	}) {
		ss.forget(s, e, nil)
	}
	ss.pumpLocked(s, now, nil)
}
