// Package topic validates MQTT topic names and topic filters, matches filters against
// names, and holds the two topic-indexed structures of the broker: the subscription
// trie (wildcards, shared subscriptions, $-topics) and the retained-message store.
//
// # Validation
//
// Limits.CheckName and Limits.CheckFilter reject, in O(len) time, everything the MQTT
// 5.0 (and 3.1.1) specification forbids: empty strings, strings over the length limit
// (checked before anything else is scanned), too many levels, U+0000, ill-formed UTF-8
// (surrogates included), wildcards in names and misplaced wildcards in filters, and
// malformed $share/ShareName/filter shared subscriptions. Errors are the sentinel
// variables of this package; compare them with errors.Is. Rules are tagged with their
// clause in the MQTT 5.0 specification ([MQTT-x.y.z-n]).
//
// Match and Covers compare one filter with one name (or one filter with another) without
// allocating; they trust their input to be valid.
//
// # Concurrency
//
// Trie and Retained are safe for concurrent use by multiple goroutines: each guards its
// nodes with an internal sync.RWMutex (Match, Get and Len take the read lock, Add, Set,
// Remove and Delete the write lock). Nothing in this package calls back into caller code,
// so no caller code ever runs while a lock is held; results are copied out into
// caller-owned values (Matches, []Retain) before the lock is released. The round-robin
// counter of a shared group (Group.Next) is an atomic value that outlives the read lock
// and may be advanced concurrently. Limits, Match, Covers and ParseShared have no state.
//
// Nothing recurses on input: the trie walks use explicit stacks, so a name with 100,000
// levels cannot exhaust the goroutine stack.
package topic
