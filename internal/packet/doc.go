// Package packet is the MQTT 3.1 (level 3), 3.1.1 (level 4) and 5.0 (level 5) wire codec.
//
// It trusts nothing it reads: the fixed header is read and checked (type, flags, a
// Variable Byte Integer of at most four bytes) before the caller reads the body, so the
// caller can refuse a packet whose declared size exceeds its limit without allocating
// for it. Decoders fill caller-owned structs from a body the caller owns and may reuse;
// everything a decoded packet keeps (strings, payloads, properties) is copied out of the
// body, so a reused read buffer can never change a packet after it was authorized.
// Encoders append to a caller's slice (AppendPublish(dst, p, version)).
//
// Errors are ReasonCode values (wrapped with context), so a server can answer with the
// right MQTT 5.0 reason code: errors.As(err, &rc). Rules are tagged with their clause in
// the MQTT 5.0 specification ([MQTT-x.y.z-n]); 3.1.1 clauses carry a "3.1.1" note.
//
// The package has no goroutines, no logging and no global state.
package packet
