// Package limiter holds the broker's keyed rate and concurrency limits with bounded memory:
//
//   - [Limiter]: one token bucket per key (a source address, a client id, a user name), for
//     connection rates, publish rates (messages or bytes) and similar. Keys beyond MaxKeys evict the
//     least recently used one in O(1) (container/list + map), so a flood of distinct keys cannot grow
//     memory without bound.
//   - [Bucket]: one token bucket, not keyed and not locked, for state a single goroutine owns (a
//     session's own publish rate).
//   - [Concurrency]: a bounded count of concurrent holders per key, for "connections per source
//     address".
//   - [SourceKey]: the key of a source address (an IPv4 address, or the /64 of an IPv6 one, since one
//     host usually holds a whole /64).
//
// It imports no other vitalmq package, does not log, and never sleeps: a refused call returns false
// and the caller decides what to do. Every type takes an injectable clock ([WithClock]) so tests run
// without sleeping.
//
// # Eviction trade-off
//
// An evicted key's bucket is forgotten, so a key that comes back starts with a full burst. An
// attacker who can present more than MaxKeys distinct keys within one refill period can therefore
// reset their own bucket; size MaxKeys above the number of keys expected to be active at once (for
// source addresses, well above the connection limit) so that only such a flood evicts live state.
// [Concurrency] never evicts a key that has holders (that would break its limit): it refuses new
// keys while its table is full instead.
package limiter
