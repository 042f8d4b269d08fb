package broker

import (
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"vitalmq/internal/limiter"
	"vitalmq/internal/packet"
	"vitalmq/internal/session"
	"vitalmq/internal/topic"
)

// handle processes one packet after CONNECT.
func (c *conn) handle(h packet.FixedHeader, body []byte) error {
	switch h.Type {
	case packet.PUBLISH:
		return c.handlePublish(h, body, false)
	case packet.PUBACK, packet.PUBREC, packet.PUBREL, packet.PUBCOMP:
		if c.ack == nil {
			c.ack = acks.Get().(*packet.Ack)
		}
		if err := packet.DecodeAck(c.ack, h.Type, body, c.version); err != nil {
			return err
		}
		return c.handleAck(c.ack)
	case packet.SUBSCRIBE:
		return c.handleSubscribe(body)
	case packet.UNSUBSCRIBE:
		return c.handleUnsubscribe(body)
	case packet.PINGREQ:
		if len(body) != 0 {
			return fmt.Errorf("%w: pingreq with a body", packet.MalformedPacket)
		}
		c.queue(func(b []byte) []byte { return packet.AppendPing(b, packet.PINGRESP) }) // [MQTT-3.12.4-1]
		return nil
	case packet.DISCONNECT:
		return c.handleDisconnect(h.Type, body)
	case packet.AUTH:
		return c.handleAuth(h.Type, body)
	case packet.CONNECT:
		return fmt.Errorf("%w: second connect", packet.ProtocolError) // [MQTT-3.1.0-2]
	default: // CONNACK, SUBACK, UNSUBACK, PINGRESP: server-to-client only
		return fmt.Errorf("%w: %v from a client", packet.ProtocolError, h.Type)
	}
}

// handlePublish handles a PUBLISH; again: once more, after its publisher was held
// (conn.hold) before anything of it was routed: it was paced and counted, and c.tx is the
// publication's still.
func (c *conn) handlePublish(h packet.FixedHeader, body []byte, again bool) error {
	if !again {
		c.pace(c.pubRate, 1, c.s.cfg.PublishRate)
		c.pace(c.byteRate, h.Size(), c.s.cfg.PublishByteRate)
	}
	now := c.now
	if c.pub == nil {
		c.pub = publishes.Get().(*packet.Publish)
	}
	p := c.pub
	if err := packet.DecodePublish(p, h.Flags, body, c.version); err != nil {
		return err
	}
	if len(p.Props.SubscriptionIDs) > 0 {
		return fmt.Errorf("%w: subscription identifier in publish", packet.ProtocolError) // [MQTT-3.3.4-6]
	}
	if p.Props.ResponseTopic != "" || p.Props.Has(packet.PropResponseTopic) {
		if err := c.s.limits.CheckName(p.Props.ResponseTopic); err != nil {
			return fmt.Errorf("%w: response topic: %w", packet.ProtocolError, err) // [MQTT-3.3.2-14]
		}
	}
	name := p.Topic
	alias := p.Props.TopicAlias
	if p.Props.Has(packet.PropTopicAlias) {
		if alias == 0 || alias > c.s.cfg.TopicAliasMaximum {
			return fmt.Errorf("%w: topic alias %d", packet.TopicAliasInvalid, alias) // [MQTT-3.3.2-8] [MQTT-3.3.2-9]
		}
		if name == "" {
			if int(alias) >= len(c.aliasIn) || c.aliasIn[alias] == "" {
				return fmt.Errorf("%w: unknown topic alias %d", packet.ProtocolError, alias) // §3.3.4
			}
			name = c.aliasIn[alias]
		}
	} else if name == "" {
		return fmt.Errorf("%w: empty topic name", packet.ProtocolError) // [MQTT-4.7.3-1]
	}
	if err := c.s.limits.CheckName(name); err != nil {
		return fmt.Errorf("%w: %w", packet.TopicNameInvalid, err) // [MQTT-3.3.2-2]
	}
	reason := packet.Success
	switch {
	case isReserved(name) || !c.canPublish(name): // authorization on the resolved topic (T39, T47)
		reason = packet.NotAuthorized
	case p.Props.PayloadFormat == 1 && !utf8.Valid(p.Payload):
		reason = packet.PayloadFormatInvalid // §3.3.2.3.2
	}
	if reason == packet.Success && p.Topic != "" && alias != 0 { // a refused publish does not set the alias (T47)
		if c.aliasIn == nil {
			c.aliasIn = make([]string, int(c.s.cfg.TopicAliasMaximum)+1)
		}
		c.aliasIn[alias] = name
	}
	tx := &c.tx
	if !again {
		c.s.stats.received.Add(1)
		tx.reset()
		tx.pub, tx.by = c, c
	}
	// A QoS 2 publication's identifier is taken before routing, and a retained message
	// stored: those wait on the reader goroutine.
	tx.replay = packet.FixedHeader{}
	if c.sock != nil && tx.pub != nil && p.QoS < 2 && !p.Retain {
		tx.replay = h
	}
	// Past the memory budget, new publications are shed (nothing acknowledged is dropped);
	// clearing a retained message frees memory and always goes through.
	shed := c.s.overloaded.Load() && reason == packet.Success && !(p.Retain && len(p.Payload) == 0)

	if p.QoS == 2 {
		return c.handlePublish2(p, name, reason, shed, tx, now)
	}
	if shed {
		c.s.dropped("memory budget exceeded", c.client.ClientID)
		switch {
		case p.QoS == 0:
			return nil
		case c.version < packet.Version5:
			return fmt.Errorf("%w: memory budget exceeded", packet.ServerBusy)
		}
		reason = packet.QuotaExceeded
	}
	if reason == packet.Success {
		var err error
		if reason, err = c.deliver(p, name, tx, now); err != nil {
			return err
		}
	}
	if p.QoS == 1 {
		c.commitThenAck(tx, packet.PUBACK, p.PacketID, reason, false)
	} else {
		c.s.commit(tx, nil)
	}
	return c.yield(tx)
}

// handlePublish2 is handlePublish's QoS 2 flow (in a function of its own, so that the QoS 0
// and 1 path's stack frame does not carry its locals: see conn.serve).
func (c *conn) handlePublish2(p *packet.Publish, name string, reason packet.ReasonCode, shed bool, tx *txn, now time.Time) error {
	ss := c.ss
	ss.mu.Lock()
	if len(ss.st.AwaitingRel) >= int(c.s.cfg.ReceiveMaximum) && !slices.Contains(ss.st.AwaitingRel, p.PacketID) {
		ss.mu.Unlock()
		return fmt.Errorf("%w: more than %d qos 2 publications awaiting release", packet.ReceiveMaximumExceeded, c.s.cfg.ReceiveMaximum) // [MQTT-3.3.4-9]
	}
	fresh := ss.st.AwaitRelease(p.PacketID)
	persistent := ss.persistent(c.s)
	ss.mu.Unlock()
	if fresh && shed {
		c.s.dropped("memory budget exceeded", c.client.ClientID)
		if c.version < packet.Version5 {
			c.releaseID(p.PacketID)
			return fmt.Errorf("%w: memory budget exceeded", packet.ServerBusy)
		}
		reason = packet.QuotaExceeded
	}
	if fresh && reason == packet.Success {
		var err error
		if reason, err = c.deliver(p, name, tx, now); err != nil { // never errDormant: tx.replay is unset
			c.releaseID(p.PacketID)
			return err
		}
	}
	switch {
	case fresh && reason.IsError(): // the flow ends with the error PUBREC: forget the id
		c.releaseID(p.PacketID)
	case fresh && persistent:
		tx.cs.Add(session.Op{Kind: session.PutAwaitRel, ClientID: c.ss.clientID, PacketID: p.PacketID})
	}
	// A duplicate is acknowledged again but not delivered again (§4.3.3); its PUBREC
	// still waits for the first copy to be durable.
	c.commitThenAck(tx, packet.PUBREC, p.PacketID, reason, !fresh)
	return c.yield(tx)
}

// yield stops reading from this publisher while a subscriber its message went to works
// through a congested queue, for at most Config.FlowControlWait per publication (counting
// any wait for room in route): TCP slows the publisher down instead of the queue
// overflowing. Not for its own session (it could not read its acknowledgements meanwhile).
func (c *conn) yield(tx *txn) error {
	return c.yieldFrom(tx, 0)
}

// yieldFrom yields for tx.congested[i:]. Where it can, the publisher waits without its
// reader goroutine (conn.hold), and yieldFrom returns errDormant.
func (c *conn) yieldFrom(tx *txn, i int) error {
	if tx.pub == nil {
		return nil // it waited long enough already
	}
	for ; i < len(tx.congested); i++ {
		g := tx.congested[i]
		if g.ss == c.ss {
			continue
		}
		if c.sock != nil && c.s.holds() {
			if c.hold(holdYield, g.ss, g.drained, packet.FixedHeader{}, i) {
				return errDormant
			}
			if !c.drained(g.ss, g.drained) {
				return nil
			}
			continue
		}
		if !tx.wait(c.s, g.drained, c.sock != nil) { // a reader's place taken by holds
			return nil
		}
	}
	return nil
}

// drained reports whether the queue c yielded for (ss's, drained closing ch) drained;
// otherwise c, which waited long enough, stops waiting for it.
func (c *conn) drained(ss *sess, ch chan struct{}) bool {
	if closed(ch) {
		return true
	}
	ss.undrain(c)
	return false
}

// releaseID forgets a QoS 2 packet identifier whose flow ended without a delivery.
func (c *conn) releaseID(id uint16) {
	c.ss.mu.Lock()
	c.ss.st.Release(id)
	c.ss.mu.Unlock()
}

// commitThenAck acknowledges a publication once what it changed is durable ([MQTT-4.3.2-?]:
// the acknowledgement is the broker's promise). If it cannot be stored the 5.0 publisher
// gets a failure reason and the 3.1.1 one is disconnected unacknowledged, so it sends again.
func (c *conn) commitThenAck(tx *txn, typ packet.Type, id uint16, reason packet.ReasonCode, barrier bool) {
	s := c.s
	if s.persist == nil || tx.cs.Empty() && !barrier && c.commits.Load() == 0 {
		s.release(tx.pump)
		a := packet.Ack{Type: typ, PacketID: id, Reason: reason}
		c.sendAckDeferred(&a)
		return
	}
	c.commitThenAckSlow(tx, typ, id, reason)
}

// commitThenAckSlow sends the acknowledgement once tx is stored and every earlier commit
// of this connection has completed. Apart from commitThenAck so that the fast path does
// not allocate the closure's acknowledgement.
func (c *conn) commitThenAckSlow(tx *txn, typ packet.Type, id uint16, reason packet.ReasonCode) {
	s := c.s
	a := packet.Ack{Type: typ, PacketID: id, Reason: reason}
	c.commits.Add(1) // acknowledgements leave in order [MQTT-4.6.0-2] [MQTT-4.6.0-3]
	done := func(err error) {
		defer c.commits.Add(-1)
		if err != nil {
			if a.Type == packet.PUBREC {
				c.ss.mu.Lock()
				c.ss.st.Release(a.PacketID)
				c.ss.mu.Unlock()
			}
			if c.version < packet.Version5 {
				c.kick(packet.ImplementationSpecificError)
				return
			}
			a.Reason = packet.QuotaExceeded
		}
		c.sendAck(&a)
	}
	if tx.cs.Empty() {
		s.persist.Commit(&session.ChangeSet{}, done) // only orders this ack after earlier commits
		return
	}
	s.commit(tx, done)
}

// deliver routes an accepted publication and returns the reason for its acknowledgement.
// now is when it arrived (its Message Expiry Interval counts from then); when it has waited
// for flow control already (handled again after its publisher was held), it is routed at
// the current time.
// A QoS 1/2 retained message the retained store refuses (its limits) is not accepted at all:
// 5.0 publishers hear Quota Exceeded, 3.1.1 ones are disconnected unacknowledged (error).
func (c *conn) deliver(p *packet.Publish, name string, tx *txn, now time.Time) (packet.ReasonCode, error) {
	msg := newMessage(name, p.Payload, p.QoS, p.Retain, &p.Props, c.client.ClientID, now)
	p.Payload = nil // the message owns it now
	// [MQTT-3.3.1-5]: a QoS 1/2 retained message is stored, or refused.
	if msg.Retain && !c.s.retain(msg, tx) && msg.QoS > 0 {
		if c.version < packet.Version5 {
			return 0, fmt.Errorf("%w: retained message not stored (retained limits)", packet.QuotaExceeded)
		}
		return packet.QuotaExceeded, nil
	}
	if !tx.until.IsZero() {
		now = time.Now()
	}
	switch n := c.s.route(msg, tx, now); {
	case n < 0:
		return 0, errDormant // held: handled again later, maybe by another goroutine already
	case n == 0 && c.version == packet.Version5:
		if tx.dropped > 0 {
			return packet.QuotaExceeded, nil // every matching session's queue was full
		}
		return packet.NoMatchingSubscribers, nil
	}
	return packet.Success, nil
}

func (c *conn) handleAck(a *packet.Ack) error {
	ss := c.ss
	now := time.Now()
	s := c.s
	switch a.Type {
	case packet.PUBACK, packet.PUBCOMP:
		ss.mu.Lock()
		if e, ok := ss.st.Ack(a.PacketID, a.Type); ok {
			s.stats.sent.Add(1)
			ss.lastAck = now
			ss.forget(s, e, nil)
			ss.pumpLocked(s, now, nil)
		}
		ss.mu.Unlock()
	case packet.PUBREC:
		ss.mu.Lock()
		if a.Reason.IsError() { // the receiver refused the message: the flow ends here (§4.3.3)
			if e, ok := ss.st.Drop(a.PacketID); ok {
				ss.lastAck = now
				ss.forget(s, e, nil)
			}
			ss.pumpLocked(s, now, nil)
			ss.mu.Unlock()
			return nil
		}
		// A PUBREC frees no place in the queue (and may be repeated): it does not count as
		// acknowledging for flow control; the PUBCOMP does.
		e, ok := ss.st.Received(a.PacketID)
		persist := ok && ss.persistent(s)
		ss.mu.Unlock()
		rel := packet.Ack{Type: packet.PUBREL, PacketID: a.PacketID} // [MQTT-4.3.3-4]
		if !ok && c.version == packet.Version5 {
			rel.Reason = packet.PacketIdentifierNotFound
		}
		if !persist {
			c.sendAck(&rel)
			return nil
		}
		// Store "released" before sending PUBREL: after a crash the broker resends PUBREL,
		// not the PUBLISH, which the client may already have completed.
		cs := &session.ChangeSet{Ops: []session.Op{{Kind: session.PutEntry, ClientID: ss.clientID, Entry: e, Sent: true, Gen: ss.gen}}}
		s.persist.Commit(cs, func(err error) {
			if err != nil { // not stored: end the connection; the flow resumes with the session
				c.kick(packet.ImplementationSpecificError)
				return
			}
			c.sendAck(&rel)
		})
	case packet.PUBREL:
		ss.mu.Lock()
		ok := ss.st.Release(a.PacketID)
		persist := ss.persistent(s)
		ss.mu.Unlock()
		comp := packet.Ack{Type: packet.PUBCOMP, PacketID: a.PacketID} // [MQTT-4.3.3-11]
		if !ok && c.version == packet.Version5 {
			comp.Reason = packet.PacketIdentifierNotFound
		}
		if !persist {
			c.sendAck(&comp)
			return nil
		}
		// The identifier is forgotten durably before PUBCOMP lets the client reuse it; a
		// PUBREL for an identifier already released (its delete may still be on its way to
		// disk) waits behind that delete.
		cs := &session.ChangeSet{}
		if ok {
			cs.Ops = []session.Op{{Kind: session.DeleteAwaitRel, ClientID: ss.clientID, PacketID: a.PacketID}}
		}
		s.persist.Commit(cs, func(err error) {
			if err != nil { // not stored: no PUBCOMP, or the client would reuse an id the store still holds
				c.kick(packet.ImplementationSpecificError)
				return
			}
			c.sendAck(&comp)
		})
	}
	return nil
}

// The handlers of rare packets decode into their own frames: a large one in handle would
// be on the stack of every publication and PINGREQ, and grow every connection's goroutine.

func (c *conn) handleSubscribe(body []byte) error {
	var sub packet.Subscribe
	if err := packet.DecodeSubscribe(&sub, body, c.version); err != nil {
		return err
	}
	p := &sub
	s, ss := c.s, c.ss
	pid := p.PacketID // p is reused by the next packet; the SUBACK may be sent after it
	tx := &c.tx
	tx.reset()
	if len(p.Props.SubscriptionIDs) > 1 {
		return fmt.Errorf("%w: more than one subscription identifier", packet.ProtocolError)
	}
	var subID uint32
	if len(p.Props.SubscriptionIDs) == 1 {
		subID = p.Props.SubscriptionIDs[0]
	}
	reasons := make([]packet.ReasonCode, len(p.Subs))
	type retainReq struct {
		filter string
		opts   packet.Subscription
	}
	var sendRetained []retainReq
	// made lists the subscriptions this SUBSCRIBE made, undone if it cannot be stored: a
	// SUBACK that says failure leaves no subscription on that filter behind
	// [MQTT-3.8.4-5] (3.1.1) / [MQTT-3.9.3-1] (the store refuses every write after a failure;
	// after a restart it has what was stored before).
	type change struct {
		filter string
		stored session.Subscription
	}
	var made []change
	for i, sub := range p.Subs {
		_, inner, shared, err := topic.ParseShared(sub.Filter)
		switch {
		case err != nil:
			reasons[i] = packet.TopicFilterInvalid // [MQTT-4.8.2-1] [MQTT-4.8.2-2]
			continue
		case shared && sub.NoLocal:
			return fmt.Errorf("%w: no local on a shared subscription", packet.ProtocolError) // [MQTT-3.8.3-4]
		}
		if !shared {
			inner = sub.Filter
		}
		if err := s.limits.CheckFilter(sub.Filter); err != nil {
			reasons[i] = packet.TopicFilterInvalid
			continue
		}
		if s.cfg.Authorizer != nil && !s.cfg.Authorizer.CanSubscribe(c.client, inner) {
			reasons[i] = packet.NotAuthorized // CASES T48–T51: decided on the inner filter
			continue
		}
		ss.mu.Lock()
		_, existed := ss.st.Subs[sub.Filter]
		if !existed && len(ss.st.Subs) >= s.cfg.MaxSubscriptions {
			ss.mu.Unlock()
			reasons[i] = packet.QuotaExceeded // T85
			continue
		}
		stored := session.Subscription{Subscription: sub, ID: subID}
		ss.st.Subs[sub.Filter] = stored
		if ss.persistent(s) {
			tx.cs.Add(session.Op{Kind: session.PutSub, ClientID: ss.clientID, Sub: stored})
			ss.stored = true
		}
		ss.mu.Unlock()
		s.subs.Add(sub.Filter, ss, trieSub(stored))
		made = append(made, change{sub.Filter, stored})
		reasons[i] = packet.ReasonCode(sub.QoS) // [MQTT-3.8.4-?] granted QoS
		if !shared && (sub.RetainHandling == 0 || sub.RetainHandling == 1 && !existed) {
			sendRetained = append(sendRetained, retainReq{inner, sub}) // [MQTT-3.3.1-9] [MQTT-3.3.1-10]
		}
	}
	// The retained messages are taken now, right after the subscriptions entered the trie:
	// one retained later is delivered live through the trie, not twice. They are sent after
	// the SUBACK, once the subscriptions are durable ([MQTT-3.8.4-1]).
	type retainedCopy struct {
		msg *session.Message
		qos byte
	}
	var copies []retainedCopy
	var found []topic.Retain[*session.Message]
	for _, r := range sendRetained {
		found = s.retained.Match(r.filter, found[:0])
		for _, m := range found {
			if r.opts.NoLocal && m.Value.Origin == c.client.ClientID {
				continue // [MQTT-3.8.3-3] not even its own retained messages
			}
			copies = append(copies, retainedCopy{m.Value, min(m.Value.QoS, r.opts.QoS)})
		}
	}
	finish := func(err error) {
		if err != nil {
			for i := range reasons {
				if !reasons[i].IsError() {
					reasons[i] = packet.UnspecifiedError
				}
			}
			ss.mu.Lock()
			for _, ch := range made {
				if cur, ok := ss.st.Subs[ch.filter]; ss.ended || !ok || cur != ch.stored {
					continue // changed again since (or the session ended): not this SUBSCRIBE's to undo
				}
				delete(ss.st.Subs, ch.filter)
				s.subs.Remove(ch.filter, ss)
			}
			ss.mu.Unlock()
		}
		c.sendSubAck(&packet.SubAck{Type: packet.SUBACK, PacketID: pid, Reasons: reasons})
		if len(copies) == 0 || err != nil {
			return
		}
		now := time.Now()
		var rtx txn
		for _, m := range copies {
			if cur, ok := s.retained.Get(m.msg.Topic); !ok || cur != m.msg {
				continue // replaced or cleared since: the newer one went live, an older one must not follow it [MQTT-4.6.0-6]
			}
			if m.msg.Expired(now) || !ss.mayReceive(s, m.msg.Topic) {
				continue
			}
			d := session.Delivery{Msg: m.msg, QoS: m.qos, Retain: true}
			if subID != 0 {
				d.SubIDs = []uint32{subID}
			}
			ss.deliver(s, d, now, &rtx)
		}
		s.commit(&rtx, nil)
	}
	s.commit(tx, finish)
	return nil
}

func (c *conn) handleUnsubscribe(body []byte) error {
	var unsub packet.Unsubscribe
	if err := packet.DecodeUnsubscribe(&unsub, body, c.version); err != nil {
		return err
	}
	p := &unsub
	pid := p.PacketID
	tx := &c.tx
	tx.reset()
	reasons := make([]packet.ReasonCode, len(p.Filters))
	for i, f := range p.Filters {
		if err := c.s.limits.CheckFilter(f); err != nil {
			reasons[i] = packet.TopicFilterInvalid
			continue
		}
		c.ss.mu.Lock()
		_, ok := c.ss.st.Subs[f]
		delete(c.ss.st.Subs, f)
		if ok && c.ss.persistent(c.s) {
			tx.cs.Add(session.Op{Kind: session.DeleteSub, ClientID: c.ss.clientID, Sub: session.Subscription{Subscription: packet.Subscription{Filter: f}}})
		}
		c.ss.mu.Unlock()
		if ok && c.s.subs.Remove(f, c.ss) {
			reasons[i] = packet.Success
		} else {
			reasons[i] = packet.NoSubscriptionExisted
		}
	}
	c.s.commit(tx, func(error) { // [MQTT-3.10.4-4]
		c.sendSubAck(&packet.SubAck{Type: packet.UNSUBACK, PacketID: pid, Reasons: reasons})
	})
	return nil
}

func (c *conn) handleAuth(t packet.Type, body []byte) error {
	var p packet.Disconnect // AUTH has the same shape
	if err := packet.DecodeDisconnect(&p, t, body, c.version); err != nil {
		return err
	}
	if c.authMethod == "" || p.Props.AuthMethod != c.authMethod {
		return fmt.Errorf("%w: auth without the connection's authentication method", packet.ProtocolError) // §4.12
	}
	return fmt.Errorf("%w: re-authentication is not supported", packet.ImplementationSpecificError)
}

func (c *conn) handleDisconnect(t packet.Type, body []byte) error {
	var disc packet.Disconnect
	if err := packet.DecodeDisconnect(&disc, t, body, c.version); err != nil {
		return err
	}
	p := &disc
	if p.Props.Has(packet.PropSessionExpiry) {
		if c.expiry == 0 && p.Props.SessionExpiry != 0 {
			return fmt.Errorf("%w: session expiry set on disconnect after 0 on connect", packet.ProtocolError) // §3.14.2.2.2
		}
		c.expiry = min(p.Props.SessionExpiry, c.s.cfg.MaxSessionExpiry)
	}
	if p.Reason == packet.Success {
		c.normalDisconnect = true // [MQTT-3.14.4-3] only a normal disconnection discards the will
	}
	return errClose
}

// errReason extracts the reason code a connection error should be reported with.
func errReason(err error) (packet.ReasonCode, bool) {
	var rc packet.ReasonCode
	if errors.As(err, &rc) && rc.IsError() {
		return rc, true
	}
	return 0, false
}

// pace waits until bucket b has n tokens: a client publishing faster than its rate is not
// read from meanwhile, so TCP slows it down and nothing it sent is lost. It reads the clock
// only when it had to wait (c.now is then moved on).
func (c *conn) pace(b *limiter.Bucket, n int, rate float64) {
	if b == nil {
		return
	}
	for !b.AllowAt(c.now, n) {
		c.flushDeferred()
		wait := time.Duration((float64(n) - b.TokensAt(c.now)) / rate * float64(time.Second))
		t := time.NewTimer(min(max(wait, time.Millisecond), time.Second))
		select {
		case <-t.C:
		case <-c.s.quit:
			t.Stop()
			return
		}
		c.now = time.Now()
	}
}
