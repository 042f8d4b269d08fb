package broker

import (
	"time"

	"vitalmq/internal/packet"
	"vitalmq/internal/session"
)

// Persister stores the broker's state durably: sessions, subscriptions, QoS 1/2 entries,
// QoS 2 identifiers awaiting release, and retained messages.
type Persister interface {
	// Load returns everything stored, once, before the server starts.
	Load() (*session.Snapshot, error)
	// Commit applies cs durably, in the order of Commit calls, then calls done (when not
	// nil) from the persister's goroutine. It must not block on I/O: many connections'
	// change sets share one sync (group commit).
	Commit(cs *session.ChangeSet, done func(error))
}

// txn collects the durable changes of one operation (a publication, a subscription)
// and the sessions whose new entries may be sent once those changes are durable.
type txn struct {
	cs      session.ChangeSet
	pump    []pending
	dropped int // deliveries refused because a session's queue was full
	// congested are the connected sessions whose queue this transaction filled past half:
	// the publisher waits for them (Config.FlowControlWait).
	congested []congestion
	// pub is the publishing connection when the publisher may be made to wait (a network
	// publication); nil: a full queue drops at once. room is set by a connected,
	// acknowledging session that had no room for a delivery: closed when it has some.
	// until ends this publication's waiting (Config.FlowControlWait after the first wait).
	// promise is the session that woke this publication for a place in its queue, until
	// it takes it. replay is the publication's header when its publisher may wait without
	// its reader goroutine (conn.hold) while nothing of it is routed yet, the publication
	// being handled again after; Type 0: it may not.
	pub     *conn
	by      *conn // the reader routing a network publication (see conn.unlockFlushBy); nil: none
	room    chan struct{}
	until   time.Time
	promise *sess
	replay  packet.FixedHeader
}

type congestion struct {
	ss      *sess
	drained chan struct{}
}

type pending struct {
	ss  *sess
	seq uint64
}

func (t *txn) reset() {
	clear(t.cs.Ops)
	t.cs.Ops = t.cs.Ops[:0]
	clear(t.pump)
	t.pump = t.pump[:0]
	t.dropped = 0
	clear(t.congested)
	t.congested = t.congested[:0]
	t.pub, t.by, t.room, t.until, t.promise, t.replay = nil, nil, nil, time.Time{}, nil, packet.FixedHeader{}
}

// dropPromise gives back a place the publication was woken for and did not take.
func (t *txn) dropPromise(s *Server) {
	if t.promise != nil {
		t.promise.stopWaitingRoom(s, nil)
		t.promise = nil
	}
}

// wait blocks until ch is closed and reports true, or false once this
// publication has waited Config.FlowControlWait in all, or its connection or the server is
// closing. Meanwhile the publisher's own session counts as not acknowledging (its reader
// cannot read acknowledgements): nobody waits for it, so two clients that publish to each
// other never wait for each other.
//
// The wait counts among Config.FlowControlReaders (reserved: holds counted it already).
func (t *txn) wait(s *Server, ch <-chan struct{}, reserved bool) bool {
	if !reserved {
		s.stats.waiting.Add(1)
	}
	defer s.stats.waiting.Add(-1)
	if !t.pause(s) {
		return false
	}
	c := t.pub
	defer c.parked.Store(false)
	d := time.Until(t.until)
	if d <= 0 {
		return false
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ch:
		return true
	case <-timer.C:
	case <-c.writerDone:
	case <-s.quit:
	}
	return false
}

// holds reports whether a publisher that is to wait for flow control, and could be held
// (conn.hold), should be: Config.FlowControlReaders publishers wait on their reader already.
// Otherwise it has taken a place among them, which its wait gives back.
func (s *Server) holds() bool {
	if s.stats.waiting.Add(1) > int64(s.cfg.FlowControlReaders) {
		s.stats.waiting.Add(-1)
		return true
	}
	return false
}

// pause begins a wait of the publisher for flow control (wait, or conn.hold): it reports
// false when this publication has waited Config.FlowControlWait already. Otherwise the
// publisher counts as parked (see wait), and its client's acknowledgements are sent.
func (t *txn) pause(s *Server) bool {
	if t.until.IsZero() {
		t.until = time.Now().Add(s.cfg.FlowControlWait)
	}
	if time.Until(t.until) <= 0 {
		return false
	}
	c := t.pub
	c.parked.Store(true)
	c.ss.mu.Lock()
	c.ss.relieveLocked(s) // those waiting for its queue stop waiting
	c.ss.mu.Unlock()
	c.flushDeferred() // its client's acknowledgements do not wait with it
	return true
}

// woke ends a wait for room in ss's queue: it reports whether the publication was woken for
// a place (ss promised it one), and otherwise takes it out of line.
func (t *txn) woke(s *Server, ss *sess, room chan struct{}) bool {
	if closed(room) {
		t.promise = ss
		return true
	}
	ss.stopWaitingRoom(s, room)
	return false
}

// closed reports whether ch is closed (a wait for it is over), without waiting.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// commit makes tx durable and then releases its entries to their sessions and calls
// done. Without changes (or without a persister) it all happens now, on this goroutine.
// tx may be reused as soon as commit returns.
func (s *Server) commit(tx *txn, done func(error)) {
	if s.persist == nil || tx.cs.Empty() {
		s.release(tx.pump)
		if done != nil {
			done(nil)
		}
		return
	}
	cs := &session.ChangeSet{Ops: append([]session.Op(nil), tx.cs.Ops...)}
	pump := append([]pending(nil), tx.pump...)
	s.persist.Commit(cs, func(err error) {
		if err != nil {
			s.log.Error("persisting state failed; not acknowledging", "err", err)
			s.unqueue(pump)
		} else {
			s.release(pump)
		}
		if done != nil {
			done(err)
		}
	})
}

// release lets sessions send entries that are now durable.
func (s *Server) release(ps []pending) {
	if len(ps) == 0 {
		return // no clock read where no session has entries to send
	}
	now := time.Now()
	for _, p := range ps {
		p.ss.mu.Lock()
		p.ss.committed(p.seq)
		p.ss.pumpLocked(s, now, nil)
		p.ss.mu.Unlock()
	}
}

// unqueue removes entries whose change set could not be stored: the publisher was not
// acknowledged and will send again, so keeping them would deliver twice.
func (s *Server) unqueue(ps []pending) {
	for _, p := range ps {
		p.ss.mu.Lock()
		p.ss.committed(p.seq)
		p.ss.st.Filter(func(e *session.Entry, sent bool) bool { return e.Seq != p.seq })
		p.ss.relieveLocked(s)
		p.ss.mu.Unlock()
	}
}
