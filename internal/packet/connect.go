package packet

import "fmt"

// ErrProtocolName is returned for a CONNECT whose protocol name is not MQTT (or MQIsdp
// for level 3). The server closes the connection without a CONNACK ([MQTT-3.1.2-1]).
var ErrProtocolName error = &codeError{MalformedPacket, "unknown protocol name"}

// Will is the will message carried by a CONNECT.
type Will struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	Props   Properties // will properties (5.0)
}

// Connect is the CONNECT packet.
type Connect struct {
	Version    byte // protocol level: 3, 4 or 5
	CleanStart bool // Clean Session in 3.1.1
	KeepAlive  uint16
	ClientID   string
	HasWill    bool
	Will       Will
	HasUser    bool
	Username   string
	HasPass    bool
	Password   []byte
	Props      Properties
}

// DecodeConnect decodes a CONNECT body. An unsupported protocol level returns
// UnsupportedProtocolVersion with c.Version set, so the server can answer with
// a CONNACK in the form the client understands.
func DecodeConnect(c *Connect, body []byte) error {
	d := decoder{b: body}
	name := d.binary("protocol name")
	c.Version = d.byte("protocol level")
	if d.err != nil {
		return d.err
	}
	switch string(name) {
	case "MQTT", "MQIsdp":
	default:
		return ErrProtocolName // [MQTT-3.1.2-1]
	}
	if (string(name) == "MQIsdp") != (c.Version == Version31) || c.Version < Version31 || c.Version > Version5 {
		return fmt.Errorf("%w: level %d", UnsupportedProtocolVersion, c.Version) // [MQTT-3.1.2-2]
	}
	flags := d.byte("connect flags")
	c.KeepAlive = d.uint16("keep alive")
	if d.err != nil {
		return d.err
	}
	if flags&0x01 != 0 {
		return fmt.Errorf("%w: reserved connect flag set", MalformedPacket) // [MQTT-3.1.2-3]
	}
	c.CleanStart = flags&0x02 != 0
	c.HasWill = flags&0x04 != 0
	c.Will.QoS = (flags >> 3) & 3
	c.Will.Retain = flags&0x20 != 0
	c.HasPass = flags&0x40 != 0
	c.HasUser = flags&0x80 != 0
	if c.Will.QoS == 3 {
		return fmt.Errorf("%w: will qos 3", MalformedPacket) // [MQTT-3.1.2-12]
	}
	if !c.HasWill && (c.Will.QoS != 0 || c.Will.Retain) {
		return fmt.Errorf("%w: will qos or retain without will flag", MalformedPacket) // [MQTT-3.1.2-11] [MQTT-3.1.2-13]
	}
	if c.Version < Version5 && c.HasPass && !c.HasUser {
		return fmt.Errorf("%w: password without user name", MalformedPacket) // 3.1.1 [MQTT-3.1.2-22]
	}
	if c.Version == Version5 {
		d.properties(&c.Props, CONNECT)
		if d.err == nil && c.Props.Has(PropAuthData) && !c.Props.Has(PropAuthMethod) {
			return fmt.Errorf("%w: authentication data without method", ProtocolError) // §3.1.2.11.10
		}
	} else {
		c.Props = Properties{}
	}
	c.ClientID = d.string("client identifier") // [MQTT-3.1.3-4]
	c.Will.Topic, c.Will.Payload, c.Will.Props, c.Username, c.Password = "", nil, Properties{}, "", nil
	if c.HasWill {
		if c.Version == Version5 {
			d.properties(&c.Will.Props, willProps)
		} else {
			c.Will.Props = Properties{}
		}
		c.Will.Topic = d.string("will topic")
		c.Will.Payload = d.bytesCopy("will payload")
		if c.Will.Payload == nil && d.err == nil {
			c.Will.Payload = []byte{}
		}
	}
	if c.HasUser {
		c.Username = d.string("user name")
	}
	if c.HasPass {
		c.Password = d.bytesCopy("password")
	}
	if d.err == nil && !d.empty() {
		return fmt.Errorf("%w: %d bytes after connect payload", MalformedPacket, len(d.b))
	}
	return d.err
}

// AppendConnect appends an encoded CONNECT (used by clients: the load tool and tests).
func AppendConnect(dst []byte, c *Connect) []byte {
	name := "MQTT"
	if c.Version == Version31 {
		name = "MQIsdp"
	}
	var flags byte
	if c.CleanStart {
		flags |= 0x02
	}
	if c.HasWill {
		flags |= 0x04 | c.Will.QoS<<3
		if c.Will.Retain {
			flags |= 0x20
		}
	}
	if c.HasPass {
		flags |= 0x40
	}
	if c.HasUser {
		flags |= 0x80
	}
	n := 2 + len(name) + 1 + 1 + 2 + 2 + len(c.ClientID)
	var ps, ws int
	if c.Version == Version5 {
		ps = c.Props.size()
		n += varintSize(ps) + ps
	}
	if c.HasWill {
		if c.Version == Version5 {
			ws = c.Will.Props.size()
			n += varintSize(ws) + ws
		}
		n += 4 + len(c.Will.Topic) + len(c.Will.Payload)
	}
	if c.HasUser {
		n += 2 + len(c.Username)
	}
	if c.HasPass {
		n += 2 + len(c.Password)
	}
	dst = appendHeader(dst, CONNECT, 0, n)
	dst = appendString(dst, name)
	dst = append(dst, c.Version, flags)
	dst = appendUint16(dst, c.KeepAlive)
	if c.Version == Version5 {
		dst = appendProperties(dst, &c.Props, ps)
	}
	dst = appendString(dst, c.ClientID)
	if c.HasWill {
		if c.Version == Version5 {
			dst = appendProperties(dst, &c.Will.Props, ws)
		}
		dst = appendString(dst, c.Will.Topic)
		dst = appendBinary(dst, c.Will.Payload)
	}
	if c.HasUser {
		dst = appendString(dst, c.Username)
	}
	if c.HasPass {
		dst = appendBinary(dst, c.Password)
	}
	return dst
}

// Connack is the CONNACK packet.
type Connack struct {
	SessionPresent bool
	Reason         ReasonCode // for 3.1.1 encoded with ConnackCode311
	Props          Properties
}

// AppendConnack appends an encoded CONNACK for the protocol version.
func AppendConnack(dst []byte, c *Connack, version byte) []byte {
	var sp byte
	if c.SessionPresent && c.Reason == Success {
		sp = 1 // [MQTT-3.2.2-6]
	}
	if version < Version5 {
		return append(dst, byte(CONNACK)<<4, 2, sp, c.Reason.ConnackCode311())
	}
	ps := c.Props.size()
	dst = appendHeader(dst, CONNACK, 0, 2+varintSize(ps)+ps)
	dst = append(dst, sp, byte(c.Reason))
	return appendProperties(dst, &c.Props, ps)
}

// DecodeConnack decodes a CONNACK body (used by clients).
func DecodeConnack(c *Connack, body []byte, version byte) error {
	d := decoder{b: body}
	flags := d.byte("acknowledge flags")
	if flags&0xFE != 0 {
		d.fail(fmt.Errorf("%w: reserved connack flags", MalformedPacket)) // [MQTT-3.2.2-1]
	}
	c.SessionPresent = flags&1 != 0
	code := d.byte("reason code")
	c.Reason = ReasonCode(code)
	if version == Version5 {
		d.properties(&c.Props, CONNACK)
	} else {
		c.Props = Properties{}
		if d.err == nil {
			c.Reason = connackCodeFrom311(code)
		}
	}
	if d.err == nil && !d.empty() {
		return fmt.Errorf("%w: trailing bytes in connack", MalformedPacket)
	}
	return d.err
}

func connackCodeFrom311(b byte) ReasonCode {
	switch b {
	case 0:
		return Success
	case 1:
		return UnsupportedProtocolVersion
	case 2:
		return ClientIdentifierNotValid
	case 3:
		return ServerUnavailable
	case 4:
		return BadUserNameOrPassword
	default:
		return NotAuthorized
	}
}
