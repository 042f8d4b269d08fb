package packet

import (
	"fmt"
	"math/bits"
)

// PropID is an MQTT 5.0 property identifier (§2.2.2.2).
type PropID byte

// Property identifiers.
const (
	PropPayloadFormat        PropID = 0x01
	PropMessageExpiry        PropID = 0x02
	PropContentType          PropID = 0x03
	PropResponseTopic        PropID = 0x08
	PropCorrelationData      PropID = 0x09
	PropSubscriptionID       PropID = 0x0B
	PropSessionExpiry        PropID = 0x11
	PropAssignedClientID     PropID = 0x12
	PropServerKeepAlive      PropID = 0x13
	PropAuthMethod           PropID = 0x15
	PropAuthData             PropID = 0x16
	PropRequestProblemInfo   PropID = 0x17
	PropWillDelay            PropID = 0x18
	PropRequestResponseInfo  PropID = 0x19
	PropResponseInfo         PropID = 0x1A
	PropServerReference      PropID = 0x1C
	PropReasonString         PropID = 0x1F
	PropReceiveMaximum       PropID = 0x21
	PropTopicAliasMaximum    PropID = 0x22
	PropTopicAlias           PropID = 0x23
	PropMaximumQoS           PropID = 0x24
	PropRetainAvailable      PropID = 0x25
	PropUserProperty         PropID = 0x26
	PropMaximumPacketSize    PropID = 0x27
	PropWildcardSubAvailable PropID = 0x28
	PropSubIDAvailable       PropID = 0x29
	PropSharedSubAvailable   PropID = 0x2A
)

// where a property may appear: one bit per packet type, plus willProps for the CONNECT will.
const willProps = 0

func on(ts ...Type) uint32 {
	var m uint32
	for _, t := range ts {
		m |= 1 << t
	}
	return m
}

// allowed maps each property to the packets that may carry it (§2.2.2.2 table).
var allowed = [64]uint32{
	PropPayloadFormat:        on(PUBLISH, willProps),
	PropMessageExpiry:        on(PUBLISH, willProps),
	PropContentType:          on(PUBLISH, willProps),
	PropResponseTopic:        on(PUBLISH, willProps),
	PropCorrelationData:      on(PUBLISH, willProps),
	PropSubscriptionID:       on(PUBLISH, SUBSCRIBE),
	PropSessionExpiry:        on(CONNECT, CONNACK, DISCONNECT),
	PropAssignedClientID:     on(CONNACK),
	PropServerKeepAlive:      on(CONNACK),
	PropAuthMethod:           on(CONNECT, CONNACK, AUTH),
	PropAuthData:             on(CONNECT, CONNACK, AUTH),
	PropRequestProblemInfo:   on(CONNECT),
	PropWillDelay:            on(willProps),
	PropRequestResponseInfo:  on(CONNECT),
	PropResponseInfo:         on(CONNACK),
	PropServerReference:      on(CONNACK, DISCONNECT),
	PropReasonString:         on(CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH),
	PropReceiveMaximum:       on(CONNECT, CONNACK),
	PropTopicAliasMaximum:    on(CONNECT, CONNACK),
	PropTopicAlias:           on(PUBLISH),
	PropMaximumQoS:           on(CONNACK),
	PropRetainAvailable:      on(CONNACK),
	PropUserProperty:         on(CONNECT, CONNACK, PUBLISH, willProps, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH),
	PropMaximumPacketSize:    on(CONNECT, CONNACK),
	PropWildcardSubAvailable: on(CONNACK),
	PropSubIDAvailable:       on(CONNACK),
	PropSharedSubAvailable:   on(CONNACK),
}

// UserProperty is a name/value pair passed through unchanged.
type UserProperty struct{ Key, Value string }

// Properties holds the MQTT 5.0 properties of a packet. A scalar or string property is
// present, on decode and on encode, when its bit is set in Present (see Has and Set);
// UserProperties and SubscriptionIDs are present when non-empty.
type Properties struct {
	Present uint64

	PayloadFormat        byte
	MessageExpiry        uint32
	ContentType          string
	ResponseTopic        string
	CorrelationData      []byte
	SubscriptionIDs      []uint32
	SessionExpiry        uint32
	AssignedClientID     string
	ServerKeepAlive      uint16
	AuthMethod           string
	AuthData             []byte
	RequestProblemInfo   byte
	WillDelay            uint32
	RequestResponseInfo  byte
	ResponseInfo         string
	ServerReference      string
	ReasonString         string
	ReceiveMaximum       uint16
	TopicAliasMaximum    uint16
	TopicAlias           uint16
	MaximumQoS           byte
	RetainAvailable      byte
	MaximumPacketSize    uint32
	WildcardSubAvailable byte
	SubIDAvailable       byte
	SharedSubAvailable   byte
	User                 []UserProperty
}

// Has reports whether property id is present.
func (p *Properties) Has(id PropID) bool { return p.Present&(1<<id) != 0 }

// Set marks property id present.
func (p *Properties) Set(id PropID) { p.Present |= 1 << id }

// Clear marks property id absent.
func (p *Properties) Clear(id PropID) { p.Present &^= 1 << id }

// decodeProperties reads a property section for packet type t (willProps for the will).
// It enforces the table of allowed properties, rejects duplicates of single-valued
// properties and values the specification forbids.
func (d *decoder) properties(p *Properties, t Type) {
	n := d.varint("properties length")
	if d.err != nil {
		return
	}
	if n > len(d.b) {
		d.short("properties")
		return
	}
	sub := decoder{b: d.b[:n]}
	d.b = d.b[n:]
	*p = Properties{} // fresh slices: a decoded packet may be kept after the next decode
	for sub.err == nil && !sub.empty() {
		idv := sub.varint("property identifier")
		if sub.err != nil {
			break
		}
		if idv >= 64 || allowed[idv] == 0 {
			sub.fail(fmt.Errorf("%w: unknown property 0x%x", MalformedPacket, idv)) // §2.2.2.2
			break
		}
		id := PropID(idv)
		if allowed[id]&(1<<t) == 0 {
			sub.fail(fmt.Errorf("%w: property 0x%x not allowed in %v", MalformedPacket, idv, typeOrWill(t)))
			break
		}
		if p.Has(id) && id != PropUserProperty && !(id == PropSubscriptionID && t == PUBLISH) {
			sub.fail(fmt.Errorf("%w: duplicate property 0x%x", ProtocolError, idv)) // §2.2.2.2
			break
		}
		p.Set(id)
		switch id {
		case PropPayloadFormat:
			p.PayloadFormat = sub.byte("payload format")
			if p.PayloadFormat > 1 {
				sub.fail(fmt.Errorf("%w: payload format indicator %d", ProtocolError, p.PayloadFormat))
			}
		case PropMessageExpiry:
			p.MessageExpiry = sub.uint32("message expiry")
		case PropContentType:
			p.ContentType = sub.string("content type")
		case PropResponseTopic:
			p.ResponseTopic = sub.string("response topic")
		case PropCorrelationData:
			p.CorrelationData = sub.bytesCopy("correlation data")
		case PropSubscriptionID:
			v := sub.varint("subscription identifier")
			if sub.err == nil && v == 0 {
				sub.fail(fmt.Errorf("%w: subscription identifier 0", ProtocolError)) // [MQTT-3.8.2-1] §3.8.2.1.2
			}
			p.SubscriptionIDs = append(p.SubscriptionIDs, uint32(v))
		case PropSessionExpiry:
			p.SessionExpiry = sub.uint32("session expiry")
		case PropAssignedClientID:
			p.AssignedClientID = sub.string("assigned client identifier")
		case PropServerKeepAlive:
			p.ServerKeepAlive = sub.uint16("server keep alive")
		case PropAuthMethod:
			p.AuthMethod = sub.string("authentication method")
		case PropAuthData:
			p.AuthData = sub.bytesCopy("authentication data")
		case PropRequestProblemInfo:
			p.RequestProblemInfo = sub.byte("request problem information")
			if p.RequestProblemInfo > 1 {
				sub.fail(fmt.Errorf("%w: request problem information %d", ProtocolError, p.RequestProblemInfo))
			}
		case PropWillDelay:
			p.WillDelay = sub.uint32("will delay")
		case PropRequestResponseInfo:
			p.RequestResponseInfo = sub.byte("request response information")
			if p.RequestResponseInfo > 1 {
				sub.fail(fmt.Errorf("%w: request response information %d", ProtocolError, p.RequestResponseInfo))
			}
		case PropResponseInfo:
			p.ResponseInfo = sub.string("response information")
		case PropServerReference:
			p.ServerReference = sub.string("server reference")
		case PropReasonString:
			p.ReasonString = sub.string("reason string")
		case PropReceiveMaximum:
			p.ReceiveMaximum = sub.uint16("receive maximum")
			if sub.err == nil && p.ReceiveMaximum == 0 {
				sub.fail(fmt.Errorf("%w: receive maximum 0", ProtocolError)) // §3.1.2.11.3
			}
		case PropTopicAliasMaximum:
			p.TopicAliasMaximum = sub.uint16("topic alias maximum")
		case PropTopicAlias:
			p.TopicAlias = sub.uint16("topic alias")
		case PropMaximumQoS:
			p.MaximumQoS = sub.byte("maximum qos")
			if p.MaximumQoS > 1 {
				sub.fail(fmt.Errorf("%w: maximum qos %d", ProtocolError, p.MaximumQoS))
			}
		case PropRetainAvailable:
			p.RetainAvailable = sub.flag("retain available")
		case PropUserProperty:
			k := sub.string("user property name")
			v := sub.string("user property value")
			p.User = append(p.User, UserProperty{k, v})
		case PropMaximumPacketSize:
			p.MaximumPacketSize = sub.uint32("maximum packet size")
			if sub.err == nil && p.MaximumPacketSize == 0 {
				sub.fail(fmt.Errorf("%w: maximum packet size 0", ProtocolError)) // §3.1.2.11.4
			}
		case PropWildcardSubAvailable:
			p.WildcardSubAvailable = sub.flag("wildcard subscription available")
		case PropSubIDAvailable:
			p.SubIDAvailable = sub.flag("subscription identifier available")
		case PropSharedSubAvailable:
			p.SharedSubAvailable = sub.flag("shared subscription available")
		}
	}
	d.fail(sub.err)
}

// flag reads a byte property whose only values are 0 and 1 (§3.2.2.3).
func (d *decoder) flag(what string) byte {
	v := d.byte(what)
	if v > 1 {
		d.fail(fmt.Errorf("%w: %s %d", ProtocolError, what, v))
	}
	return v
}

func typeOrWill(t Type) string {
	if t == willProps {
		return "will properties"
	}
	return t.String()
}

// size is the encoded size of the property section's content (without its length prefix).
func (p *Properties) size() int {
	if p == nil {
		return 0
	}
	n := 0
	for m := p.Present; m != 0; m &= m - 1 {
		id := PropID(bits.TrailingZeros64(m))
		switch id {
		case PropPayloadFormat, PropRequestProblemInfo, PropRequestResponseInfo, PropMaximumQoS,
			PropRetainAvailable, PropWildcardSubAvailable, PropSubIDAvailable, PropSharedSubAvailable:
			n += 2
		case PropServerKeepAlive, PropReceiveMaximum, PropTopicAliasMaximum, PropTopicAlias:
			n += 3
		case PropMessageExpiry, PropSessionExpiry, PropWillDelay, PropMaximumPacketSize:
			n += 5
		case PropContentType:
			n += 3 + len(p.ContentType)
		case PropResponseTopic:
			n += 3 + len(p.ResponseTopic)
		case PropCorrelationData:
			n += 3 + len(p.CorrelationData)
		case PropAssignedClientID:
			n += 3 + len(p.AssignedClientID)
		case PropAuthMethod:
			n += 3 + len(p.AuthMethod)
		case PropAuthData:
			n += 3 + len(p.AuthData)
		case PropResponseInfo:
			n += 3 + len(p.ResponseInfo)
		case PropServerReference:
			n += 3 + len(p.ServerReference)
		case PropReasonString:
			n += 3 + len(p.ReasonString)
		}
	}
	for _, id := range p.SubscriptionIDs {
		n += 1 + varintSize(int(id))
	}
	for _, u := range p.User {
		n += 5 + len(u.Key) + len(u.Value)
	}
	return n
}

// appendProperties appends the property section with its length prefix.
func appendProperties(dst []byte, p *Properties, size int) []byte {
	dst = appendVarint(dst, size)
	if p == nil {
		return dst
	}
	for m := p.Present; m != 0; m &= m - 1 {
		id := PropID(bits.TrailingZeros64(m))
		switch id {
		case PropSubscriptionID, PropUserProperty:
			continue // written from the slices below
		}
		dst = append(dst, byte(id))
		switch id {
		case PropPayloadFormat:
			dst = append(dst, p.PayloadFormat)
		case PropRequestProblemInfo:
			dst = append(dst, p.RequestProblemInfo)
		case PropRequestResponseInfo:
			dst = append(dst, p.RequestResponseInfo)
		case PropMaximumQoS:
			dst = append(dst, p.MaximumQoS)
		case PropRetainAvailable:
			dst = append(dst, p.RetainAvailable)
		case PropWildcardSubAvailable:
			dst = append(dst, p.WildcardSubAvailable)
		case PropSubIDAvailable:
			dst = append(dst, p.SubIDAvailable)
		case PropSharedSubAvailable:
			dst = append(dst, p.SharedSubAvailable)
		case PropServerKeepAlive:
			dst = appendUint16(dst, p.ServerKeepAlive)
		case PropReceiveMaximum:
			dst = appendUint16(dst, p.ReceiveMaximum)
		case PropTopicAliasMaximum:
			dst = appendUint16(dst, p.TopicAliasMaximum)
		case PropTopicAlias:
			dst = appendUint16(dst, p.TopicAlias)
		case PropMessageExpiry:
			dst = appendUint32(dst, p.MessageExpiry)
		case PropSessionExpiry:
			dst = appendUint32(dst, p.SessionExpiry)
		case PropWillDelay:
			dst = appendUint32(dst, p.WillDelay)
		case PropMaximumPacketSize:
			dst = appendUint32(dst, p.MaximumPacketSize)
		case PropContentType:
			dst = appendString(dst, p.ContentType)
		case PropResponseTopic:
			dst = appendString(dst, p.ResponseTopic)
		case PropCorrelationData:
			dst = appendBinary(dst, p.CorrelationData)
		case PropAssignedClientID:
			dst = appendString(dst, p.AssignedClientID)
		case PropAuthMethod:
			dst = appendString(dst, p.AuthMethod)
		case PropAuthData:
			dst = appendBinary(dst, p.AuthData)
		case PropResponseInfo:
			dst = appendString(dst, p.ResponseInfo)
		case PropServerReference:
			dst = appendString(dst, p.ServerReference)
		case PropReasonString:
			dst = appendString(dst, p.ReasonString)
		}
	}
	for _, id := range p.SubscriptionIDs {
		dst = appendVarint(append(dst, byte(PropSubscriptionID)), int(id))
	}
	for _, u := range p.User {
		dst = appendString(append(dst, byte(PropUserProperty)), u.Key)
		dst = appendString(dst, u.Value)
	}
	return dst
}
