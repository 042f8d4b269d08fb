// Package loadgen is vitalmq's load generator: raw MQTT over net.Conn (optionally TLS or
// mTLS) written so that the tool is not the bottleneck of what it measures.
//
// Publishers encode with packet.AppendPublish into a reused buffer and write many packets
// per system call; subscribers read through one bufio.Reader per connection and decode
// PUBLISH by hand (topic, packet identifier, payload) without allocating; acknowledgements
// are batched until the reader would block. Latencies go into a fixed-size log-linear
// histogram. Nothing on the per-message path allocates (see the benchmarks).
//
// Every payload starts with a 16-byte stamp: the send time (UnixNano, big endian) and a
// 64-bit sequence made of a run tag (8 bits), the publisher's index (20 bits) and that
// publisher's message count (36 bits), so a subscriber measures publish→deliver latency,
// ignores leftovers of an earlier run, and finds losses as sequence gaps per publisher
// whatever the topic layout.
//
// Two modes: RunPubSub (N publishers × M subscribers, QoS 0/1/2, paced or unpaced) and
// RunConns (K idle connections spread over source addresses 127.0.0.2…, handshake rate and
// broker memory per connection). Both read the broker's CPU time and memory from /proc when
// given its PID. Every loop is bounded by a duration or a count, and only loopback targets
// are accepted (CheckLoopback): the tool must never load someone else's server.
package loadgen
