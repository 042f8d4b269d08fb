package broker

import (
	"fmt"
	"time"

	"vitalmq/internal/packet"
	"vitalmq/internal/session"
	"vitalmq/internal/topic"
)

// router is per-call scratch for route, pooled so routing does not allocate.
type router struct {
	m       topic.Matches[*sess, subscription]
	targets []target
	seen    map[*sess]int
}

type target struct {
	s      *sess
	qos    byte
	retain bool
	subIDs []uint32
	group  string
}

// Publish routes a message from in-process code, as if a trusted client had published it:
// no publish authorization, but every receiver's authorization is still checked. A
// retained message is stored (an empty payload clears it).
func (s *Server) Publish(msg *session.Message) error {
	if err := s.limits.CheckName(msg.Topic); err != nil {
		return err
	}
	var tx txn
	if msg.Retain && !s.retain(msg, &tx) && msg.QoS > 0 {
		return fmt.Errorf("retained message not stored: %w", packet.QuotaExceeded)
	}
	s.route(msg, &tx, time.Now())
	s.commit(&tx, nil)
	return nil
}

// retain stores or clears the retained message for msg.Topic ([MQTT-3.3.1-5], [MQTT-3.3.1-6])
// and reports whether it did. Limits: MaxRetained and MaxRetainedBytes in total,
// MaxRetainedPerClient per publishing client. A QoS 0 message that does not fit still
// clears the one it replaces ([MQTT-3.3.1-7]: never a stale value under a newer one); a
// refused QoS 1/2 one leaves it (the publication is refused).
func (s *Server) retain(msg *session.Message, tx *txn) bool {
	s.retainMu.Lock()
	defer s.retainMu.Unlock()
	old, had := s.retained.Get(msg.Topic)
	unretain := func() {
		if !had || msg.QoS > 0 && len(msg.Payload) > 0 {
			return
		}
		s.retained.Delete(msg.Topic)
		s.countRetained(old.Origin, -1)
		s.retainedBytes -= retainedSize(old)
		if s.persist != nil {
			tx.cs.Add(session.Op{Kind: session.DeleteRetained, Topic: msg.Topic})
		}
	}
	if len(msg.Payload) == 0 {
		unretain()
		return true
	}
	switch {
	case !had && s.retained.Len() >= s.cfg.MaxRetained,
		s.retainedBytes+retainedSize(msg)-retainedSize(old) > s.cfg.MaxRetainedBytes:
		s.dropped("retained message store full", msg.Origin)
		unretain()
		return false
	case (!had || old.Origin != msg.Origin) && msg.Origin != "" && s.retainedBy[msg.Origin] >= s.cfg.MaxRetainedPerClient:
		s.dropped("retained messages per client", msg.Origin)
		unretain()
		return false
	}
	if had {
		s.countRetained(old.Origin, -1)
		s.retainedBytes -= retainedSize(old)
	}
	s.countRetained(msg.Origin, 1)
	s.retainedBytes += retainedSize(msg)
	s.retained.Set(msg.Topic, msg)
	if s.persist != nil {
		tx.cs.Add(session.Op{Kind: session.PutRetained, Msg: msg})
	}
	return true
}

func retainedSize(m *session.Message) int64 {
	if m == nil {
		return 0
	}
	return int64(len(m.Topic) + len(m.Payload))
}

// countRetained keeps the per-client count of retained messages. Called with s.retainMu held.
func (s *Server) countRetained(origin string, d int) {
	if origin == "" {
		return
	}
	if n := s.retainedBy[origin] + d; n > 0 {
		s.retainedBy[origin] = n
	} else {
		delete(s.retainedBy, origin)
	}
}

// route delivers msg to every matching session: once per session, with the highest
// matching QoS and all matching subscription identifiers; one member per shared group.
// Durable changes go into tx; now is the time of the publication. It returns the number of
// sessions the message was delivered to, or -1 when the publisher's connection is held
// (conn.hold): the connection, tx included, may belong to another goroutine already.
func (s *Server) route(msg *session.Message, tx *txn, now time.Time) int {
	r := s.routes.Get().(*router)
	defer func() {
		r.m.Reset()
		clear(r.targets)
		r.targets = r.targets[:0]
		clear(r.seen)
		s.routes.Put(r)
	}()
	s.subs.Match(msg.Topic, &r.m)
	for _, e := range r.m.Subs {
		if e.Value.noLocal && msg.Origin != "" && e.Key.clientID == msg.Origin {
			continue // [MQTT-3.8.3-3]
		}
		r.add(e.Key, msg, e.Value, "")
	}
	for _, g := range r.m.Groups {
		members := r.m.Shared[g.Start:g.End]
		n := len(members)
		first := int((g.Next.Add(1) - 1) % uint64(n))
		pick := -1
		for i := range n { // fair round robin, preferring a connected member
			j := (first + i) % n
			if members[j].Key.online.Load() && members[j].Key.mayReceive(s, msg.Topic) {
				pick = j
				break
			}
		}
		if pick < 0 {
			pick = first
		}
		e := members[pick]
		r.add(e.Key, msg, e.Value, e.Filter)
	}
	delivered, tried := 0, 0
	for i := range r.targets {
		t := &r.targets[i]
		if !t.s.mayReceive(s, msg.Topic) {
			continue
		}
		tried++
		d := session.Delivery{Msg: msg, QoS: t.qos, Retain: t.retain, SubIDs: t.subIDs, Group: t.group}
		ok := t.s.deliver(s, d, now, tx)
		for !ok && tx.room != nil { // a connected subscriber without room: the publisher waits
			room := tx.room
			tx.room = nil
			holdable := tx.replay.Type != 0 && tried == 1
			if holdable && s.holds() {
				// Nothing routed yet (no other target tried; replay is unset for a retained
				// or QoS 2 publication, which changed state before routing): the publisher
				// waits without its reader goroutine, and the publication is handled again
				// after (conn.hold). (A shared group's turn moves on then.)
				tx.dropPromise(s)
				if tx.pub.hold(holdPublish, t.s, room, tx.replay, 0) {
					return -1
				}
			} else {
				tx.wait(s, room, holdable) // holdable: holds took a reader's place
			}
			if !tx.woke(s, t.s, room) {
				tx.pub = nil // waited long enough: this publication drops at full queues now
			}
			now = time.Now() // expiry and the remaining lifetime count the wait [MQTT-3.3.2-5]
			ok = t.s.deliver(s, d, now, tx)
		}
		tx.dropPromise(s) // the woken target took no place (it ended meanwhile)
		if ok {
			delivered++
		}
	}
	return delivered
}

func (r *router) add(ss *sess, msg *session.Message, sub subscription, group string) {
	qos := min(msg.QoS, sub.qos)
	retain := msg.Retain && sub.retainAsPub // [MQTT-3.3.1-12] [MQTT-3.3.1-13]
	if i, ok := r.seen[ss]; ok && group == "" && r.targets[i].group == "" {
		t := &r.targets[i]
		t.qos = max(t.qos, qos)
		t.retain = t.retain || retain
		if sub.id != 0 {
			t.subIDs = append(t.subIDs, sub.id) // [MQTT-3.3.4-3]
		}
		return
	}
	t := target{s: ss, qos: qos, retain: retain, group: group}
	if sub.id != 0 {
		t.subIDs = []uint32{sub.id}
	}
	r.seen[ss] = len(r.targets)
	r.targets = append(r.targets, t)
}

// dropSubscriptions removes an ended session's subscriptions from the trie.
func (s *Server) dropSubscriptions(ss *sess) {
	ss.mu.Lock()
	filters := make([]string, 0, len(ss.st.Subs))
	for f := range ss.st.Subs {
		filters = append(filters, f)
	}
	ss.mu.Unlock()
	for _, f := range filters {
		s.subs.Remove(f, ss)
	}
}

// redeliverShared hands the shared-subscription messages a departing member had not
// completed to another connected member of the same group.
func (s *Server) redeliverShared(from *sess, ds []session.Delivery, tx *txn) {
	now := time.Now()
	var m topic.Matches[*sess, subscription]
	for _, d := range ds {
		m.Reset()
		s.subs.Match(d.Msg.Topic, &m)
		done := false
		for _, g := range m.Groups {
			members := m.Shared[g.Start:g.End]
			if len(members) == 0 || members[0].Filter != d.Group {
				continue
			}
			for _, e := range members {
				if e.Key != from && e.Key.online.Load() && e.Key.mayReceive(s, d.Msg.Topic) {
					d.QoS = min(d.Msg.QoS, e.Value.qos)
					done = e.Key.deliver(s, d, now, tx)
					break
				}
			}
		}
		if !done { // nobody else: keep it in the departing session
			from.deliver(s, d, now, tx)
		}
	}
}
