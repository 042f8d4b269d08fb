package packet

import "fmt"

// Publish is the PUBLISH packet. A decoded Publish owns Topic and Payload (they are copies).
type Publish struct {
	Dup      bool
	QoS      byte
	Retain   bool
	Topic    string // may be empty in 5.0 when a Topic Alias is used
	PacketID uint16 // QoS 1 and 2 only
	Props    Properties
	Payload  []byte
}

// DecodePublish decodes a PUBLISH body; flags come from the fixed header, already validated.
func DecodePublish(p *Publish, flags byte, body []byte, version byte) error {
	d := decoder{b: body}
	p.Dup = flags&0x08 != 0
	p.QoS = (flags >> 1) & 3
	p.Retain = flags&0x01 != 0
	p.Topic = d.string("topic name") // [MQTT-3.3.2-1]
	p.PacketID = 0
	if p.QoS > 0 {
		p.PacketID = d.uint16("packet identifier")
		if d.err == nil && p.PacketID == 0 {
			return fmt.Errorf("%w: packet identifier 0", ProtocolError) // [MQTT-2.2.1-3]
		}
	}
	if version == Version5 {
		d.properties(&p.Props, PUBLISH)
	} else {
		p.Props = Properties{}
	}
	if d.err != nil {
		return d.err
	}
	p.Payload = append(make([]byte, 0, len(d.b)), d.b...)
	return nil
}

// PublishSize is the Remaining Length of p when encoded for version.
func PublishSize(p *Publish, version byte) (remaining, propsSize int) {
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	if version == Version5 {
		propsSize = p.Props.size()
		n += varintSize(propsSize) + propsSize
	}
	return n, propsSize
}

// AppendPublish appends an encoded PUBLISH for the protocol version.
func AppendPublish(dst []byte, p *Publish, version byte) []byte {
	n, ps := PublishSize(p, version)
	flags := p.QoS << 1
	if p.Dup {
		flags |= 0x08
	}
	if p.Retain {
		flags |= 0x01
	}
	dst = appendHeader(dst, PUBLISH, flags, n)
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendUint16(dst, p.PacketID)
	}
	if version == Version5 {
		dst = appendProperties(dst, &p.Props, ps)
	}
	return append(dst, p.Payload...)
}

// Ack is PUBACK, PUBREC, PUBREL or PUBCOMP.
type Ack struct {
	Type     Type
	PacketID uint16
	Reason   ReasonCode
	Props    Properties
}

// DecodeAck decodes the body of a PUBACK, PUBREC, PUBREL or PUBCOMP.
func DecodeAck(a *Ack, t Type, body []byte, version byte) error {
	d := decoder{b: body}
	a.Type = t
	a.PacketID = d.uint16("packet identifier")
	a.Reason = Success
	a.Props = Properties{}
	if d.err == nil && a.PacketID == 0 {
		return fmt.Errorf("%w: packet identifier 0", ProtocolError) // [MQTT-2.2.1-3]
	}
	if version == Version5 && !d.empty() { // §3.4.2.1: reason and properties may be omitted
		a.Reason = ReasonCode(d.byte("reason code"))
		if !d.empty() {
			d.properties(&a.Props, t)
		}
	}
	if d.err == nil && !d.empty() {
		return fmt.Errorf("%w: trailing bytes in %v", MalformedPacket, t)
	}
	return d.err
}

// AppendAck appends an encoded PUBACK, PUBREC, PUBREL or PUBCOMP, in the shortest form allowed.
func AppendAck(dst []byte, a *Ack, version byte) []byte {
	var flags byte
	if a.Type == PUBREL {
		flags = 2
	}
	if version < Version5 || (a.Reason == Success && a.Props.Present == 0 && len(a.Props.User) == 0) {
		return append(dst, byte(a.Type)<<4|flags, 2, byte(a.PacketID>>8), byte(a.PacketID))
	}
	ps := a.Props.size()
	if ps == 0 {
		return append(dst, byte(a.Type)<<4|flags, 3, byte(a.PacketID>>8), byte(a.PacketID), byte(a.Reason))
	}
	dst = appendHeader(dst, a.Type, flags, 3+varintSize(ps)+ps)
	dst = append(appendUint16(dst, a.PacketID), byte(a.Reason))
	return appendProperties(dst, &a.Props, ps)
}
