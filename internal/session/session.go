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
	// response topic, correlation data and user properties. Message expiry is in Expiry.
	Props packet.Properties
	// Expiry is when the message expires (zero: never), from the Message Expiry Interval.
	Expiry time.Time
	// Origin is the publishing client's identifier, for No Local; empty for the server itself.
	Origin string

	// encoded caches the QoS 0 PUBLISH encoding shared by every subscriber that gets the
	// same bytes: by protocol (3.1.1, 5.0) and RETAIN flag.
	encoded [4]atomic.Pointer[[]byte]
}

// Encoded returns the cached QoS 0 encoding for slot (see EncodedSlot), or nil.
func (m *Message) Encoded(slot int) []byte {
	if p := m.encoded[slot].Load(); p != nil {
		return *p
	}
	return nil
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

// Inflight is a QoS 1/2 message sent to the client and not yet fully acknowledged.
type Inflight struct {
	ID       uint16
	Delivery Delivery
	// Released is true once a PUBREC was received: the server has sent PUBREL and waits for PUBCOMP.
	Released bool
}

// State is one client's session.
type State struct {
	ClientID       string
	Subs           map[string]Subscription // by filter
	Inflight       []Inflight              // in send order
	Queue          []Delivery              // waiting for the window or the client
	QueuedBytes    int
	AwaitingRel    []uint16 // QoS 2 identifiers received from the client, awaiting PUBREL
	ExpiryInterval uint32   // seconds; 0xFFFFFFFF never expires
	lastID         uint16
}

// New returns an empty session.
func New(clientID string) *State {
	return &State{ClientID: clientID, Subs: make(map[string]Subscription)}
}

// NextID returns a packet identifier not in use by an in-flight message, or 0 when all
// 65,535 are in use ([MQTT-2.2.1-2]: an identifier is not reused while in flight).
func (s *State) NextID() uint16 {
	if len(s.Inflight) >= 65535 {
		return 0
	}
	for {
		s.lastID++
		if s.lastID == 0 {
			s.lastID = 1
		}
		if s.find(s.lastID) < 0 {
			return s.lastID
		}
	}
}

func (s *State) find(id uint16) int {
	for i := range s.Inflight {
		if s.Inflight[i].ID == id {
			return i
		}
	}
	return -1
}

// Ack completes the in-flight message id for a PUBACK (QoS 1) or PUBCOMP (QoS 2, after
// PUBREC). It returns the delivery and whether id was in flight in that state.
func (s *State) Ack(id uint16, t packet.Type) (Delivery, bool) {
	i := s.find(id)
	if i < 0 {
		return Delivery{}, false
	}
	f := s.Inflight[i]
	switch {
	case t == packet.PUBACK && f.Delivery.QoS == 1:
	case t == packet.PUBCOMP && f.Delivery.QoS == 2 && f.Released:
	default:
		return Delivery{}, false
	}
	s.Inflight = append(s.Inflight[:i], s.Inflight[i+1:]...)
	return f.Delivery, true
}

// Received records a PUBREC for a QoS 2 message in flight. It returns false when id is not
// an in-flight QoS 2 message. A repeated PUBREC is accepted (the PUBREL is sent again).
func (s *State) Received(id uint16) bool {
	i := s.find(id)
	if i < 0 || s.Inflight[i].Delivery.QoS != 2 {
		return false
	}
	s.Inflight[i].Released = true
	return true
}

// Drop removes an in-flight message (a PUBACK/PUBREC with an error reason ends the flow).
func (s *State) Drop(id uint16) (Delivery, bool) {
	i := s.find(id)
	if i < 0 {
		return Delivery{}, false
	}
	d := s.Inflight[i].Delivery
	s.Inflight = append(s.Inflight[:i], s.Inflight[i+1:]...)
	return d, true
}

// Enqueue appends a delivery to the queue unless that would pass maxMsgs or maxBytes.
func (s *State) Enqueue(d Delivery, maxMsgs, maxBytes int) bool {
	size := len(d.Msg.Payload) + len(d.Msg.Topic)
	if len(s.Queue) >= maxMsgs || s.QueuedBytes+size > maxBytes {
		return false
	}
	s.Queue = append(s.Queue, d)
	s.QueuedBytes += size
	return true
}

// Dequeue removes and returns the oldest queued delivery.
func (s *State) Dequeue() (Delivery, bool) {
	if len(s.Queue) == 0 {
		return Delivery{}, false
	}
	d := s.Queue[0]
	s.Queue[0] = Delivery{}
	s.Queue = s.Queue[1:]
	s.QueuedBytes -= len(d.Msg.Payload) + len(d.Msg.Topic)
	if len(s.Queue) == 0 {
		s.Queue = nil // let the backing array go
	}
	return d, true
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
