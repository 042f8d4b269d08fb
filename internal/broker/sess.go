package broker

import (
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
	client   atomic.Pointer[Client] // identity of the latest owner, for CanReceive
	online   atomic.Bool

	mu       sync.Mutex
	st       *session.State
	conn     *conn // nil while offline
	will     *session.Message
	willAt   time.Time // when a delayed will is due
	expireAt time.Time // when an offline session ends; zero: not scheduled
	ended    bool

	// handler is set for an in-process subscriber: deliveries go to inbox instead of a connection.
	inbox chan *session.Message
}

func newSess(clientID string) *sess {
	return &sess{clientID: clientID, st: session.New(clientID)}
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
	ss.will = nil
	return w
}

// deliver hands a message to the session: straight to the connection when the window
// allows, else into the bounded queue; QoS 0 is not queued for an offline session.
// It reports whether the message was accepted.
func (ss *sess) deliver(s *Server, d session.Delivery, now time.Time) bool {
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
	c := ss.conn
	if d.QoS == 0 {
		if c == nil {
			return false
		}
		return c.sendPublish(d, 0, false, now)
	}
	if c != nil && len(ss.st.Queue) == 0 && len(ss.st.Inflight) < c.sendQuota {
		return ss.sendLocked(d, now)
	}
	if !ss.st.Enqueue(d, s.cfg.MaxQueuedMessages, s.cfg.MaxQueuedBytes) {
		s.stats.dropped.Add(1)
		s.log.Warn("session queue full; message dropped", "client", ss.clientID)
		return false
	}
	return true
}

// sendLocked assigns a packet identifier and sends a QoS 1/2 delivery. Called with ss.mu held
// and ss.conn set.
func (ss *sess) sendLocked(d session.Delivery, now time.Time) bool {
	id := ss.st.NextID()
	if id == 0 {
		return false
	}
	if !ss.conn.sendPublish(d, id, false, now) {
		return false // too large for the client or expired: treated as delivered [MQTT-3.1.2-25]
	}
	ss.st.Inflight = append(ss.st.Inflight, session.Inflight{ID: id, Delivery: d})
	return true
}

// pumpLocked moves queued messages into the window. Called with ss.mu held.
func (ss *sess) pumpLocked(now time.Time) {
	c := ss.conn
	if c == nil {
		return
	}
	for len(ss.st.Inflight) < c.sendQuota {
		d, ok := ss.st.Dequeue()
		if !ok {
			return
		}
		if d.Msg.Expired(now) {
			continue // [MQTT-3.3.2-5]
		}
		if d.QoS == 0 {
			c.sendPublish(d, 0, false, now)
			continue
		}
		ss.sendLocked(d, now)
	}
}

// resumeLocked re-sends what was in flight, in order, then the queue ([MQTT-4.4.0-1]).
// Called with ss.mu held, after ss.conn was set.
func (ss *sess) resumeLocked(now time.Time) {
	c := ss.conn
	kept := ss.st.Inflight[:0]
	for _, f := range ss.st.Inflight {
		if f.Released {
			c.sendAck(&packet.Ack{Type: packet.PUBREL, PacketID: f.ID})
			kept = append(kept, f)
			continue
		}
		if c.sendPublish(f.Delivery, f.ID, true, now) { // DUP=1 [MQTT-3.3.1-1]
			kept = append(kept, f)
		}
	}
	clear(ss.st.Inflight[len(kept):])
	ss.st.Inflight = kept
	ss.pumpLocked(now)
}
