package loadgen

import "encoding/binary"

// StampSize is the size of the stamp every payload starts with: send time and sequence.
const StampSize = 16

// The stamped 64-bit sequence is: an 8-bit run tag (so that what a broker still delivers
// from an earlier run is not mistaken for this run's), a 20-bit publisher index and a 36-bit
// count of that publisher's messages.
const (
	seqBits = 36
	pubBits = 20
	seqMask = 1<<seqBits - 1
	pubMask = 1<<pubBits - 1
	// MaxPublishers is the largest number of publishers one run can tell apart.
	MaxPublishers = 1 << pubBits
)

// stamp writes the send time (UnixNano) and the sequence into the first 16 bytes of p.
func stamp(p []byte, unixNano int64, tag byte, pub int, n uint64) {
	binary.BigEndian.PutUint64(p, uint64(unixNano))
	binary.BigEndian.PutUint64(p[8:], uint64(tag)<<(seqBits+pubBits)|uint64(pub&pubMask)<<seqBits|n&seqMask)
}

// unstamp reads a stamp back: send time, run tag, publisher index and that publisher's count.
func unstamp(p []byte) (unixNano int64, tag byte, pub int, n uint64, ok bool) {
	if len(p) < StampSize {
		return 0, 0, 0, 0, false
	}
	seq := binary.BigEndian.Uint64(p[8:])
	return int64(binary.BigEndian.Uint64(p)), byte(seq >> (seqBits + pubBits)), int(seq>>seqBits) & pubMask, seq & seqMask, true
}

// parsePublish splits a PUBLISH body without copying or allocating: topic name, packet
// identifier (QoS 1 and 2) and payload; 5.0 properties are skipped. flags is the low nibble
// of the fixed header. The tool never enables topic aliases, so the topic is always there.
func parsePublish(flags byte, body []byte, v5 bool) (topic []byte, id uint16, payload []byte, ok bool) {
	if len(body) < 2 {
		return nil, 0, nil, false
	}
	i := 2 + (int(body[0])<<8 | int(body[1]))
	if len(body) < i {
		return nil, 0, nil, false
	}
	topic = body[2:i]
	if (flags>>1)&3 != 0 {
		if len(body) < i+2 {
			return nil, 0, nil, false
		}
		id = uint16(body[i])<<8 | uint16(body[i+1])
		i += 2
	}
	if v5 {
		n, w := uvarint(body[i:])
		if w == 0 || len(body)-i-w < n {
			return nil, 0, nil, false
		}
		i += w + n
	}
	return topic, id, body[i:], true
}

// uvarint decodes an MQTT Variable Byte Integer: value and width (0 when malformed).
func uvarint(b []byte) (int, int) {
	v, mult := 0, 1
	for i := 0; i < 4 && i < len(b); i++ {
		v += int(b[i]&0x7F) * mult
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
		mult <<= 7
	}
	return 0, 0
}
