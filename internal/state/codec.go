package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"vitalmq/internal/packet"
	"vitalmq/internal/session"
)

// Values are a small binary encoding: uvarints and length-prefixed bytes. A message is
// stored as its MQTT 5.0 PUBLISH encoding (the fuzzed codec) plus what PUBLISH cannot
// carry: its absolute expiry and its origin.

var errCorrupt = errors.New("state: corrupt record")

const formatVersion = 1

type enc struct{ b []byte }

func (e *enc) uint(v uint64)  { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) bytes(v []byte) { e.uint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) str(v string)   { e.uint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.uint(0)
		return
	}
	e.uint(uint64(t.UnixNano()))
}
func (e *enc) bool(v bool) {
	if v {
		e.uint(1)
		return
	}
	e.uint(0)
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes() []byte {
	n := d.uint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errCorrupt
		return nil
	}
	v := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return v
}

func (d *dec) str() string { return string(d.bytes()) }

func (d *dec) time() time.Time {
	v := d.uint()
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(v))
}

func (d *dec) bool() bool { return d.uint() == 1 }

// optUint reads a field added after the first release: records written before it end
// earlier and read as 0.
func (d *dec) optUint() uint64 {
	if d.err != nil || len(d.b) == 0 {
		return 0
	}
	return d.uint()
}

func appendMessage(e *enc, m *session.Message) {
	p := packet.Publish{QoS: m.QoS, Retain: m.Retain, Topic: m.Topic, Payload: m.Payload, Props: m.Properties()}
	if m.QoS > 0 {
		p.PacketID = 1 // placeholder: the identifier lives in the entry
	}
	e.bytes(packet.AppendPublish(nil, &p, packet.Version5))
	e.time(m.Expiry)
	e.str(m.Origin)
}

func readMessage(d *dec) *session.Message {
	raw := d.bytes()
	expiry := d.time()
	origin := d.str()
	if d.err != nil {
		return nil
	}
	if len(raw) < 2 {
		d.err = errCorrupt
		return nil
	}
	// Skip the fixed header: one byte and the Remaining Length.
	n := 1
	for n < len(raw) && n < 5 && raw[n]&0x80 != 0 {
		n++
	}
	if n+1 > len(raw) {
		d.err = errCorrupt
		return nil
	}
	var p packet.Publish
	if err := packet.DecodePublish(&p, raw[0]&0x0F, raw[n+1:], packet.Version5); err != nil {
		d.err = fmt.Errorf("%w: %w", errCorrupt, err)
		return nil
	}
	m := &session.Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, Expiry: expiry, Origin: origin}
	if p.Props.Present != 0 || len(p.Props.User) > 0 {
		props := p.Props
		m.Props = &props
	}
	return m
}

func encodeEntry(en session.Entry, sent bool, gen uint64) []byte {
	e := enc{b: []byte{formatVersion}}
	e.uint(uint64(en.ID))
	e.uint(uint64(en.Delivery.QoS))
	e.bool(en.Delivery.Retain)
	e.bool(en.Released)
	e.bool(sent || en.Released)
	e.str(en.Delivery.Group)
	e.uint(uint64(len(en.Delivery.SubIDs)))
	for _, id := range en.Delivery.SubIDs {
		e.uint(uint64(id))
	}
	appendMessage(&e, en.Delivery.Msg)
	e.uint(gen)
	return e.b
}

func decodeEntry(b []byte, seq uint64) (session.StoredEntry, error) {
	if len(b) == 0 || b[0] != formatVersion {
		return session.StoredEntry{}, errCorrupt
	}
	d := dec{b: b[1:]}
	var se session.StoredEntry
	se.Seq = seq
	se.ID = uint16(d.uint())
	se.Delivery.QoS = byte(d.uint())
	se.Delivery.Retain = d.bool()
	se.Released = d.bool()
	se.Sent = d.bool()
	se.Delivery.Group = d.str()
	n := d.uint()
	if n > 1024 {
		d.err = errCorrupt
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		se.Delivery.SubIDs = append(se.Delivery.SubIDs, uint32(d.uint()))
	}
	se.Delivery.Msg = readMessage(&d)
	se.Gen = d.optUint()
	if d.err == nil && (se.ID == 0 || se.Delivery.QoS == 0 || se.Delivery.QoS > 2) {
		d.err = errCorrupt
	}
	return se, d.err
}

func encodeMeta(m session.Meta) []byte {
	e := enc{b: []byte{formatVersion}}
	e.uint(uint64(m.ExpiryInterval))
	e.time(m.ExpireAt)
	e.str(m.Username)
	e.uint(uint64(len(m.Attrs)))
	for k, v := range m.Attrs {
		e.str(k)
		e.str(v)
	}
	e.uint(uint64(m.WillDelay))
	e.uint(uint64(m.WillExpiry))
	e.bool(m.Anonymous)
	e.bool(m.Will != nil)
	if m.Will != nil {
		appendMessage(&e, m.Will)
	}
	e.uint(m.Gen)
	e.uint(m.SentThrough)
	return e.b
}

func decodeMeta(b []byte, clientID string) (session.Meta, error) {
	if len(b) == 0 || b[0] != formatVersion {
		return session.Meta{}, errCorrupt
	}
	d := dec{b: b[1:]}
	m := session.Meta{ClientID: clientID}
	m.ExpiryInterval = uint32(d.uint())
	m.ExpireAt = d.time()
	m.Username = d.str()
	n := d.uint()
	if n > 1024 {
		d.err = errCorrupt
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		if m.Attrs == nil {
			m.Attrs = map[string]string{}
		}
		k := d.str()
		m.Attrs[k] = d.str()
	}
	m.WillDelay = uint32(d.uint())
	m.WillExpiry = uint32(d.uint())
	m.Anonymous = d.bool()
	if d.bool() {
		m.Will = readMessage(&d)
	}
	m.Gen = d.optUint()
	m.SentThrough = d.optUint()
	return m, d.err
}

func encodeSub(s session.Subscription) []byte {
	e := enc{b: []byte{formatVersion}}
	e.uint(uint64(s.QoS))
	e.bool(s.NoLocal)
	e.bool(s.RetainAsPublished)
	e.uint(uint64(s.RetainHandling))
	e.uint(uint64(s.ID))
	return e.b
}

func decodeSub(b []byte, filter string) (session.Subscription, error) {
	if len(b) == 0 || b[0] != formatVersion {
		return session.Subscription{}, errCorrupt
	}
	d := dec{b: b[1:]}
	var s session.Subscription
	s.Filter = filter
	s.QoS = byte(d.uint())
	s.NoLocal = d.bool()
	s.RetainAsPublished = d.bool()
	s.RetainHandling = byte(d.uint())
	s.ID = uint32(d.uint())
	if d.err == nil && s.QoS > 2 {
		d.err = errCorrupt
	}
	return s, d.err
}

func encodeRetained(m *session.Message) []byte {
	e := enc{b: []byte{formatVersion}}
	appendMessage(&e, m)
	return e.b
}

func decodeRetained(b []byte) (*session.Message, error) {
	if len(b) == 0 || b[0] != formatVersion {
		return nil, errCorrupt
	}
	d := dec{b: b[1:]}
	m := readMessage(&d)
	return m, d.err
}
