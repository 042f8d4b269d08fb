// Package session is the per-client session state of an MQTT server as pure logic: the
// subscriptions, the packet-identifier allocator, the window of QoS 1/2 messages in
// flight to the client, the queue of messages waiting for the window or for the client
// to come back, and the QoS 2 packet identifiers received and awaiting PUBREL.
//
// There is no I/O, no clock and no locking here: the broker owns a State under its own
// mutex, and the persister stores the same values.
package session

import (
	"sync/atomic"
	"time"

	"vitalmq/internal/packet"
)

// Message is an application message as routed: immutable once published, shared by every
// session it is delivered to.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Props holds the properties forwarded to subscribers: payload format, content type,
	// response topic, correlation data and user properties; nil when there are none (most
	// device messages), which keeps a message at 128 instead of 392 bytes. Message expiry
	// is in Expiry. Never modified once the message is published.
	Props *packet.Properties
	// Expiry is when the message expires (zero: never), from the Message Expiry Interval.
	Expiry time.Time
	// Origin is the publishing client's identifier, for No Local; empty for the server itself.
	Origin string

	// encoded caches the QoS 0 PUBLISH encoding shared by every subscriber that gets the
	// same bytes: by protocol (3.1.1, 5.0) and RETAIN flag. It holds encodedOnce after the
	// first such delivery, which encodes without caching (see Encoded).
	encoded [4]atomic.Pointer[[]byte]
}

// encodedOnce marks a slot whose encoding one delivery made and did not cache.
var encodedOnce = new([]byte)

// Properties returns a copy of the message's forwarded properties (empty when none).
func (m *Message) Properties() packet.Properties {
	if m.Props == nil {
		return packet.Properties{}
	}
	return *m.Props
}

// Encoded returns the cached QoS 0 encoding for slot (see EncodedSlot), or nil. With nil,
// first reports whether this is the slot's first delivery: most messages have one
// subscriber (a device's readings, one application), so the first delivery encodes
// straight into its connection's buffer, and only a second one encodes a copy to cache
// (SetEncoded) for itself and the rest.
func (m *Message) Encoded(slot int) (b []byte, first bool) {
	p := m.encoded[slot].Load()
	if p == nil {
		if m.encoded[slot].CompareAndSwap(nil, encodedOnce) {
			return nil, true
		}
		p = m.encoded[slot].Load()
	}
	if p == encodedOnce {
		return nil, false
	}
	return *p, false
}

// SetEncoded caches a QoS 0 encoding for slot.
func (m *Message) SetEncoded(slot int, b []byte) { m.encoded[slot].Store(&b) }

// EncodedSlot is the cache slot for a protocol version and RETAIN flag.
func EncodedSlot(v5, retain bool) int {
	i := 0
	if v5 {
		i = 2
	}
	if retain {
		i++
	}
	return i
}

// Expired reports whether the message has expired at now.
func (m *Message) Expired(now time.Time) bool { return !m.Expiry.IsZero() && !now.Before(m.Expiry) }

// Subscription is one of a session's subscriptions.
type Subscription struct {
	packet.Subscription        // Filter as the client sent it (with any $share prefix), options
	ID                  uint32 // Subscription Identifier, 0 when none
}

// Delivery is a message addressed to one session, with the options it is sent with.
type Delivery struct {
	Msg    *Message
	QoS    byte     // the granted QoS: min(message QoS, subscription QoS)
	Retain bool     // the RETAIN flag to send
	SubIDs []uint32 // subscription identifiers of the matching subscriptions
	Group  string   // the shared subscription ("$share/g/f") it came through, "" if none
}

// Entry is a QoS 1/2 delivery held by a session: queued, then in flight until acknowledged.
// Its packet identifier and sequence number are assigned when it is queued, so a stored
// entry keeps the identifier the client may already have seen.
type Entry struct {
	Seq      uint64 // order within the session; the key it is stored under
	ID       uint16 // packet identifier
	Delivery Delivery
	// Released is true once a PUBREC was received: the server has sent PUBREL and waits for PUBCOMP.
	Released bool
	// Dup is true for an entry sent on an earlier connection and queued again: it is re-sent
	// with the DUP flag.
	Dup bool
}

// State is one client's session. Entries move from Queue to Inflight in order.
type State struct {
	ClientID       string
	Subs           map[string]Subscription // by filter
	Inflight       []Entry                 // sent, not yet fully acknowledged, in send order
	Queue          []Entry                 // waiting for the window or the client; a window into qbuf
	QueuedBytes    int
	AwaitingRel    []uint16 // QoS 2 identifiers received from the client, awaiting PUBREL
	ExpiryInterval uint32   // seconds; 0xFFFFFFFF never expires
	lastID         uint16
	lastSeq        uint64
	used           map[uint16]struct{} // identifiers of Inflight and Queue
	// qbuf is the array Queue was last allocated in (its full length). Next takes entries
	// from Queue's front and push appends them at its back: push slides them back to the
	// start rather than allocating, so a queue that keeps filling and draining (a busy
	// subscriber's) does not allocate a new array every few messages.
	qbuf []Entry
}

// keepQueue is the largest array (in entries, 80 bytes each) an emptied queue keeps.
const keepQueue = 256

// push appends e to the queue, reusing the front of qbuf that Next freed when the queue
// reached the end of it and takes at most half of it. A large array that the queue now
// uses less than a quarter of is not reused: append moves the queue to a smaller one, so a
// burst's array is not kept for good by a queue that never quite empties.
func (s *State) push(e Entry) {
	n, size := len(s.Queue), cap(s.qbuf)
	if n == cap(s.Queue) && n <= size/2 && (size <= keepQueue || n >= size/4) &&
		(n == 0 || &s.Queue[:cap(s.Queue)][n-1] == &s.qbuf[len(s.qbuf)-1]) {
		copy(s.qbuf, s.Queue) // Queue ends where qbuf does and starts at or past its middle: no overlap
		clear(s.Queue)
		s.Queue = s.qbuf[:n]
	}
	grew := len(s.Queue) == cap(s.Queue)
	s.Queue = append(s.Queue, e)
	if grew {
		s.qbuf = s.Queue[:cap(s.Queue)]
	}
}

// New returns an empty session.
func New(clientID string) *State {
	return &State{ClientID: clientID, Subs: make(map[string]Subscription)}
}

// LastSeq is the highest sequence number assigned.
func (s *State) LastSeq() uint64 { return s.lastSeq }

// nextID returns a packet identifier not used by any held entry, or 0 when all
// 65,535 are in use ([MQTT-2.2.1-2]: an identifier is not reused while in flight).
func (s *State) nextID() uint16 {
	if len(s.used) >= 65535 {
		return 0
	}
	for {
		s.lastID++
		if s.lastID == 0 {
			s.lastID = 1
		}
		if _, ok := s.used[s.lastID]; !ok {
			return s.lastID
		}
	}
}

func (s *State) use(id uint16) {
	if s.used == nil {
		s.used = make(map[uint16]struct{})
	}
	s.used[id] = struct{}{}
}

func entrySize(d *Delivery) int { return len(d.Msg.Payload) + len(d.Msg.Topic) }

// Enqueue appends a QoS 1/2 delivery to the queue with a new packet identifier and
// sequence number, unless that would pass maxMsgs or maxBytes or no identifier is free.
func (s *State) Enqueue(d Delivery, maxMsgs, maxBytes int) (Entry, bool) {
	size := entrySize(&d)
	if len(s.Queue) >= maxMsgs || s.QueuedBytes+size > maxBytes {
		return Entry{}, false
	}
	id := s.nextID()
	if id == 0 {
		return Entry{}, false
	}
	s.use(id)
	s.lastSeq++
	e := Entry{Seq: s.lastSeq, ID: id, Delivery: d}
	s.push(e)
	s.QueuedBytes += size
	return e, true
}

// Restore puts back a stored entry (at load time, in sequence order): entries that were
// sent go in flight, the others in the queue.
func (s *State) Restore(e Entry, sent bool) {
	s.use(e.ID)
	s.lastSeq = max(s.lastSeq, e.Seq)
	s.lastID = e.ID
	if sent {
		s.Inflight = append(s.Inflight, e)
		return
	}
	s.push(e)
	s.QueuedBytes += entrySize(&e.Delivery)
}

// Requeue moves in-flight entries that are not released back to the front of the queue
// (marked Dup), in order, so that at most keep entries stay in flight: a client's new
// Receive Maximum may allow fewer messages in flight than the previous connection had.
// Released entries (QoS 2 awaiting PUBCOMP) stay and count against keep [MQTT-4.9.0-2].
func (s *State) Requeue(keep int) {
	for _, e := range s.Inflight {
		if e.Released {
			keep--
		}
	}
	var back []Entry
	in := s.Inflight[:0]
	for _, e := range s.Inflight {
		if e.Released || keep > 0 {
			if !e.Released {
				keep--
			}
			in = append(in, e)
			continue
		}
		e.Dup = true
		back = append(back, e)
		s.QueuedBytes += entrySize(&e.Delivery)
	}
	clear(s.Inflight[len(in):])
	s.Inflight = in
	if len(back) > 0 {
		s.Queue = append(back, s.Queue...)
		s.qbuf = s.Queue[:cap(s.Queue)]
	}
}

// Next moves the oldest queued entry into flight and returns it.
func (s *State) Next() (Entry, bool) {
	if len(s.Queue) == 0 {
		return Entry{}, false
	}
	e := s.Queue[0]
	s.Queue[0] = Entry{}
	s.Queue = s.Queue[1:]
	if len(s.Queue) == 0 {
		s.Queue = nil // start again at the array's front, or let a large one go
		if cap(s.qbuf) <= keepQueue {
			s.Queue = s.qbuf[:0]
		} else {
			s.qbuf = nil
		}
	}
	s.QueuedBytes -= entrySize(&e.Delivery)
	s.Inflight = append(s.Inflight, e)
	return e, true
}

// Peek returns the oldest queued entry without moving it.
func (s *State) Peek() (Entry, bool) {
	if len(s.Queue) == 0 {
		return Entry{}, false
	}
	return s.Queue[0], true
}

func (s *State) find(id uint16) int {
	for i := range s.Inflight {
		if s.Inflight[i].ID == id {
			return i
		}
	}
	return -1
}

func (s *State) remove(i int) Entry {
	e := s.Inflight[i]
	last := len(s.Inflight) - 1
	copy(s.Inflight[i:], s.Inflight[i+1:])
	s.Inflight[last] = Entry{} // the array stays: no message kept alive from its tail
	s.Inflight = s.Inflight[:last]
	delete(s.used, e.ID)
	return e
}

// Ack completes the in-flight message id for a PUBACK (QoS 1) or PUBCOMP (QoS 2, after
// PUBREC). It returns the entry and whether id was in flight in that state.
func (s *State) Ack(id uint16, t packet.Type) (Entry, bool) {
	i := s.find(id)
	if i < 0 {
		return Entry{}, false
	}
	f := s.Inflight[i]
	switch {
	case t == packet.PUBACK && f.Delivery.QoS == 1:
	case t == packet.PUBCOMP && f.Delivery.QoS == 2 && f.Released:
	default:
		return Entry{}, false
	}
	return s.remove(i), true
}

// Received records a PUBREC for a QoS 2 message in flight. It returns the entry and false
// when id is not an in-flight QoS 2 message. A repeated PUBREC is accepted.
func (s *State) Received(id uint16) (Entry, bool) {
	i := s.find(id)
	if i < 0 || s.Inflight[i].Delivery.QoS != 2 {
		return Entry{}, false
	}
	s.Inflight[i].Released = true
	return s.Inflight[i], true
}

// Drop removes an in-flight entry (a PUBACK/PUBREC with an error reason ends the flow).
func (s *State) Drop(id uint16) (Entry, bool) {
	i := s.find(id)
	if i < 0 {
		return Entry{}, false
	}
	return s.remove(i), true
}

// Filter keeps only the entries for which keep returns true and returns the removed ones.
func (s *State) Filter(keep func(e *Entry, sent bool) bool) (removed []Entry) {
	in := s.Inflight[:0]
	for _, e := range s.Inflight {
		if keep(&e, true) {
			in = append(in, e)
		} else {
			removed = append(removed, e)
			delete(s.used, e.ID)
		}
	}
	clear(s.Inflight[len(in):])
	s.Inflight = in
	q := s.Queue[:0]
	for _, e := range s.Queue {
		if keep(&e, false) {
			q = append(q, e)
		} else {
			removed = append(removed, e)
			delete(s.used, e.ID)
			s.QueuedBytes -= entrySize(&e.Delivery)
		}
	}
	clear(s.Queue[len(q):])
	s.Queue = q
	return removed
}

// AwaitRelease records a QoS 2 packet identifier received from the client. It returns
// false if the identifier is already awaiting release (a duplicate: do not deliver again).
func (s *State) AwaitRelease(id uint16) bool {
	for _, v := range s.AwaitingRel {
		if v == id {
			return false
		}
	}
	s.AwaitingRel = append(s.AwaitingRel, id)
	return true
}

// Release forgets a QoS 2 packet identifier on PUBREL; false if it was not awaiting release.
func (s *State) Release(id uint16) bool {
	for i, v := range s.AwaitingRel {
		if v == id {
			s.AwaitingRel = append(s.AwaitingRel[:i], s.AwaitingRel[i+1:]...)
			return true
		}
	}
	return false
}
