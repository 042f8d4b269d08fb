package packet

import "fmt"

// Subscription is one topic filter of a SUBSCRIBE with its options.
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
}

// Subscribe is the SUBSCRIBE packet.
type Subscribe struct {
	PacketID uint16
	Props    Properties
	Subs     []Subscription
}

// DecodeSubscribe decodes a SUBSCRIBE body.
func DecodeSubscribe(s *Subscribe, body []byte, version byte) error {
	d := decoder{b: body}
	s.PacketID = d.uint16("packet identifier")
	if d.err == nil && s.PacketID == 0 {
		return fmt.Errorf("%w: packet identifier 0", ProtocolError) // [MQTT-2.2.1-3]
	}
	if version == Version5 {
		d.properties(&s.Props, SUBSCRIBE)
	} else {
		s.Props = Properties{}
	}
	s.Subs = s.Subs[:0]
	if d.err == nil && d.empty() {
		return fmt.Errorf("%w: subscribe without topic filters", ProtocolError) // [MQTT-3.8.3-2]
	}
	for d.err == nil && !d.empty() {
		var sub Subscription
		sub.Filter = d.string("topic filter")
		opts := d.byte("subscription options")
		if d.err != nil {
			break
		}
		if sub.Filter == "" {
			return fmt.Errorf("%w: empty topic filter", ProtocolError) // [MQTT-4.7.3-1]
		}
		sub.QoS = opts & 3
		if sub.QoS == 3 {
			return fmt.Errorf("%w: subscription qos 3", MalformedPacket) // [MQTT-3.8.3-4]
		}
		if version == Version5 {
			sub.NoLocal = opts&0x04 != 0
			sub.RetainAsPublished = opts&0x08 != 0
			sub.RetainHandling = (opts >> 4) & 3
			if sub.RetainHandling == 3 || opts&0xC0 != 0 {
				return fmt.Errorf("%w: reserved subscription options %#x", MalformedPacket, opts) // [MQTT-3.8.3-5]
			}
		} else if opts&0xFC != 0 {
			return fmt.Errorf("%w: reserved subscription options %#x", MalformedPacket, opts) // 3.1.1 [MQTT-3.8.3-4]
		}
		s.Subs = append(s.Subs, sub)
	}
	return d.err
}

// AppendSubscribe appends an encoded SUBSCRIBE (used by clients).
func AppendSubscribe(dst []byte, s *Subscribe, version byte) []byte {
	n := 2
	ps := 0
	if version == Version5 {
		ps = s.Props.size()
		n += varintSize(ps) + ps
	}
	for _, sub := range s.Subs {
		n += 3 + len(sub.Filter)
	}
	dst = appendHeader(dst, SUBSCRIBE, 2, n)
	dst = appendUint16(dst, s.PacketID)
	if version == Version5 {
		dst = appendProperties(dst, &s.Props, ps)
	}
	for _, sub := range s.Subs {
		opts := sub.QoS | sub.RetainHandling<<4
		if sub.NoLocal {
			opts |= 0x04
		}
		if sub.RetainAsPublished {
			opts |= 0x08
		}
		dst = append(appendString(dst, sub.Filter), opts)
	}
	return dst
}

// Unsubscribe is the UNSUBSCRIBE packet.
type Unsubscribe struct {
	PacketID uint16
	Props    Properties
	Filters  []string
}

// DecodeUnsubscribe decodes an UNSUBSCRIBE body.
func DecodeUnsubscribe(u *Unsubscribe, body []byte, version byte) error {
	d := decoder{b: body}
	u.PacketID = d.uint16("packet identifier")
	if d.err == nil && u.PacketID == 0 {
		return fmt.Errorf("%w: packet identifier 0", ProtocolError) // [MQTT-2.2.1-3]
	}
	if version == Version5 {
		d.properties(&u.Props, UNSUBSCRIBE)
	} else {
		u.Props = Properties{}
	}
	u.Filters = u.Filters[:0]
	if d.err == nil && d.empty() {
		return fmt.Errorf("%w: unsubscribe without topic filters", ProtocolError) // [MQTT-3.10.3-2]
	}
	for d.err == nil && !d.empty() {
		f := d.string("topic filter")
		if d.err == nil && f == "" {
			return fmt.Errorf("%w: empty topic filter", ProtocolError) // [MQTT-4.7.3-1]
		}
		if d.err == nil {
			u.Filters = append(u.Filters, f)
		}
	}
	return d.err
}

// AppendUnsubscribe appends an encoded UNSUBSCRIBE (used by clients).
func AppendUnsubscribe(dst []byte, u *Unsubscribe, version byte) []byte {
	n := 2
	ps := 0
	if version == Version5 {
		ps = u.Props.size()
		n += varintSize(ps) + ps
	}
	for _, f := range u.Filters {
		n += 2 + len(f)
	}
	dst = appendHeader(dst, UNSUBSCRIBE, 2, n)
	dst = appendUint16(dst, u.PacketID)
	if version == Version5 {
		dst = appendProperties(dst, &u.Props, ps)
	}
	for _, f := range u.Filters {
		dst = appendString(dst, f)
	}
	return dst
}

// SubAck is SUBACK or UNSUBACK: a reason code per filter (3.1.1 UNSUBACK has none).
type SubAck struct {
	Type     Type // SUBACK or UNSUBACK
	PacketID uint16
	Props    Properties
	Reasons  []ReasonCode
}

// AppendSubAck appends an encoded SUBACK or UNSUBACK. For 3.1.1 a failed subscription is
// 0x80 and UNSUBACK carries no payload.
func AppendSubAck(dst []byte, s *SubAck, version byte) []byte {
	if version < Version5 {
		if s.Type == UNSUBACK {
			return append(dst, byte(UNSUBACK)<<4, 2, byte(s.PacketID>>8), byte(s.PacketID))
		}
		dst = appendHeader(dst, SUBACK, 0, 2+len(s.Reasons))
		dst = appendUint16(dst, s.PacketID)
		for _, r := range s.Reasons {
			if r.IsError() {
				r = 0x80 // [MQTT-3.9.3-2] 3.1.1
			}
			dst = append(dst, byte(r))
		}
		return dst
	}
	ps := s.Props.size()
	dst = appendHeader(dst, s.Type, 0, 2+varintSize(ps)+ps+len(s.Reasons))
	dst = appendUint16(dst, s.PacketID)
	dst = appendProperties(dst, &s.Props, ps)
	for _, r := range s.Reasons {
		dst = append(dst, byte(r))
	}
	return dst
}

// DecodeSubAck decodes a SUBACK or UNSUBACK body (used by clients).
func DecodeSubAck(s *SubAck, t Type, body []byte, version byte) error {
	d := decoder{b: body}
	s.Type = t
	s.PacketID = d.uint16("packet identifier")
	if version == Version5 {
		d.properties(&s.Props, t)
	} else {
		s.Props = Properties{}
		if t == UNSUBACK && d.err == nil && !d.empty() {
			return fmt.Errorf("%w: 3.1.1 unsuback with a payload", MalformedPacket) // 3.1.1 §3.11.1
		}
	}
	s.Reasons = s.Reasons[:0]
	for d.err == nil && !d.empty() {
		rc := ReasonCode(d.byte("reason code"))
		if version < Version5 && rc > 2 && rc != 0x80 {
			return fmt.Errorf("%w: 3.1.1 suback return code %#x", MalformedPacket, byte(rc)) // 3.1.1 [MQTT-3.9.3-2]
		}
		s.Reasons = append(s.Reasons, rc)
	}
	return d.err
}

// Disconnect is DISCONNECT (5.0 carries a reason and properties) or AUTH (same shape).
type Disconnect struct {
	Type   Type // DISCONNECT or AUTH
	Reason ReasonCode
	Props  Properties
}

// DecodeDisconnect decodes a DISCONNECT or AUTH body.
func DecodeDisconnect(p *Disconnect, t Type, body []byte, version byte) error {
	d := decoder{b: body}
	p.Type = t
	p.Reason = Success
	p.Props = Properties{}
	if version < Version5 {
		if len(body) != 0 {
			return fmt.Errorf("%w: %v with a body", MalformedPacket, t)
		}
		return nil
	}
	if !d.empty() { // §3.14.2.1, §3.15.2.1: reason and properties may be omitted
		p.Reason = ReasonCode(d.byte("reason code"))
		if !d.empty() {
			d.properties(&p.Props, t)
		}
	}
	if d.err == nil && !d.empty() {
		return fmt.Errorf("%w: trailing bytes in %v", MalformedPacket, t)
	}
	return d.err
}

// AppendDisconnect appends an encoded DISCONNECT or AUTH.
func AppendDisconnect(dst []byte, p *Disconnect, version byte) []byte {
	t := p.Type
	if t == 0 {
		t = DISCONNECT
	}
	if version < Version5 {
		return append(dst, byte(t)<<4, 0)
	}
	ps := p.Props.size()
	if ps == 0 {
		if p.Reason == Success {
			return append(dst, byte(t)<<4, 0)
		}
		return append(dst, byte(t)<<4, 1, byte(p.Reason))
	}
	dst = appendHeader(dst, t, 0, 1+varintSize(ps)+ps)
	dst = append(dst, byte(p.Reason))
	return appendProperties(dst, &p.Props, ps)
}

// AppendPing appends a PINGREQ or PINGRESP.
func AppendPing(dst []byte, t Type) []byte { return append(dst, byte(t)<<4, 0) }
